"""A scenario: a folder with one `.sumocfg` (or the `.sumocfg` itself)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Scenario", "ScenarioError", "InductionLoop", "LaneAreaDetector", "SignalProgram", "load_scenario"]


class ScenarioError(ValueError):
    """A scenario that cannot be run, naming the file and what is wrong."""


@dataclass(frozen=True)
class InductionLoop:
    """An E1 detector the scenario defines (in its additional files)."""

    loop_id: str
    lane: str
    position_m: float       # from the lane's start; negative: from its end (SUMO's convention)


@dataclass(frozen=True)
class LaneAreaDetector:
    """An E2 detector the scenario defines on one lane (a camera or radar zone)."""

    detector_id: str
    lane: str


@dataclass(frozen=True)
class SignalProgram:
    """A `<tlLogic>` a scenario's additional file defines: SUMO runs it in place of
    the net's own program for that signal (the program loaded last is active)."""

    signal_id: str
    program_id: str
    offset_s: float
    kind: str            # SUMO's tlLogic type: static, actuated, delay_based, ...
    # (state, duration_s, min_dur_s, max_dur_s), -1 where no minDur/maxDur is given.
    phases: tuple[tuple[str, float, float, float], ...]
    source: str          # "FILE: <tlLogic id=...>", for error messages
    # Per phase, its `next` attribute (the phases that may follow it), () where absent.
    next_phases: tuple[tuple[int, ...], ...] = ()
    path: str = ""       # the file that defines it


@dataclass(frozen=True)
class Scenario:
    name: str
    config: Path
    net_file: Path
    route_files: tuple[Path, ...]
    additional_files: tuple[Path, ...]
    begin_s: float
    end_s: float

    def window(self, begin_s: float | None = None, end_s: float | None = None) -> tuple[float, float]:
        """The simulated interval: the given bounds, else the scenario's own."""
        return (self.begin_s if begin_s is None else begin_s, self.end_s if end_s is None else end_s)

    def induction_loops(self) -> tuple[InductionLoop, ...]:
        """Every E1 induction loop in the scenario's additional files."""
        loops = []
        for path, element in self._additional_elements(("inductionLoop", "e1Detector")):
            loop_id, lane, position = element.get("id"), element.get("lane"), element.get("pos")
            try:
                loops.append(InductionLoop(str(loop_id), str(lane), float(position)))
            except (TypeError, ValueError):
                raise ScenarioError(f"{path}: <{element.tag} id={loop_id!r}> needs a lane and a numeric pos "
                                    f"(got lane={lane!r} pos={position!r})") from None
        return tuple(loops)

    def lane_area_detectors(self) -> tuple[LaneAreaDetector, ...]:
        """Every single-lane E2 detector in the scenario's additional files (one
        spanning several lanes cannot say which lane its vehicles are on)."""
        areas = []
        for path, element in self._additional_elements(("laneAreaDetector", "e2Detector")):
            detector_id, lane = element.get("id"), element.get("lane")
            if detector_id is None:
                raise ScenarioError(f"{path}: <{element.tag}> without an id")
            if lane is not None:
                areas.append(LaneAreaDetector(detector_id, lane))
        return tuple(areas)

    def signal_programs(self, at_s: float | None = None) -> dict[str, SignalProgram]:
        """Per signal id, the program of the additional files that SUMO runs at
        `at_s` (default: the scenario's begin): the last `<tlLogic>` loaded for
        it, or where a WAUT governs the signal, the program its switches select
        then. Signals absent here run the net's own program."""
        at_s = self.begin_s if at_s is None else at_s
        loaded: dict[tuple[str, str], SignalProgram] = {}
        last: dict[str, str] = {}
        wauts: dict[str, tuple[str, list[tuple[float, str]]]] = {}
        governed: dict[str, str] = {}
        for path, element in self._additional_elements(("tlLogic", "WAUT", "wautJunction")):
            if element.tag == "tlLogic":
                program = _signal_program(path, element)
                loaded[program.signal_id, program.program_id] = program
                last[program.signal_id] = program.program_id
            elif element.tag == "WAUT":
                switches = []
                for switch in element.iter("wautSwitch"):
                    try:
                        switches.append((_sumo_time_s(switch.get("time", "")), str(switch.get("to"))))
                    except ValueError:
                        raise ScenarioError(f"{path}: <wautSwitch time={switch.get('time')!r}> in WAUT "
                                            f"{element.get('id')!r} is not a time") from None
                wauts[str(element.get("id"))] = (str(element.get("startProg")), sorted(switches))
            else:
                governed[str(element.get("junctionID"))] = str(element.get("wautID"))
        for signal_id, waut_id in governed.items():
            if waut_id not in wauts:
                raise ScenarioError(f"{self.config}: <wautJunction junctionID={signal_id!r}> names WAUT "
                                    f"{waut_id!r}, which no additional file defines")
            program_id, switches = wauts[waut_id]
            for time_s, target in switches:
                if time_s <= at_s:
                    program_id = target
            last[signal_id] = program_id
        return {signal_id: loaded[signal_id, program_id] for signal_id, program_id in last.items()
                if (signal_id, program_id) in loaded}

    def _additional_elements(self, tags: tuple[str, ...]):
        for path in self.additional_files:
            try:
                root = ET.parse(path).getroot()
            except ET.ParseError as exc:
                raise ScenarioError(f"{path}: not valid XML ({exc})") from exc
            for element in root.iter():
                if element.tag in tags:
                    yield path, element


def _signal_program(path: Path, element) -> SignalProgram:
    signal_id, program_id = element.get("id"), element.get("programID", "0")
    source = f"{path}: <tlLogic id={signal_id!r} programID={program_id!r}>"
    if signal_id is None:
        raise ScenarioError(f"{path}: <tlLogic> without an id")
    phases, next_phases = [], []
    for phase in element.iter("phase"):
        state = phase.get("state")
        try:
            duration = _sumo_time_s(phase.get("duration", ""))
            bounds = [_sumo_time_s(phase.get(key)) if phase.get(key) is not None else -1.0
                      for key in ("minDur", "maxDur")]
            next_phases.append(tuple(int(k) for k in phase.get("next", "").split()))
        except ValueError:
            raise ScenarioError(f"{source}: a <phase> needs numeric duration, minDur and maxDur, and phase "
                                f"numbers in next (got {dict(phase.attrib)})") from None
        if not state or duration <= 0.0:
            raise ScenarioError(f"{source}: a <phase> needs a state and a positive duration "
                                f"(got {dict(phase.attrib)})")
        phases.append((state, duration, bounds[0], bounds[1]))
    if not phases:
        raise ScenarioError(f"{source}: no <phase>")
    try:
        offset = _sumo_time_s(element.get("offset", "0"))
    except ValueError:
        raise ScenarioError(f"{source}: offset {element.get('offset')!r} is not a time") from None
    return SignalProgram(signal_id, program_id, offset, element.get("type", "static"), tuple(phases), source,
                         tuple(next_phases), str(path))


# SUMO reads both; sumo --save-configuration writes <sumoConfiguration> since 1.20.
_CONFIG_ROOTS = ("configuration", "sumoConfiguration")


def _sumo_time_s(raw: str) -> float:
    """A SUMO time value: seconds, or h:m:s / d:h:m:s (e.g. "15:0:0")."""
    parts = [float(part) for part in raw.split(":")]
    if len(parts) not in (1, 3, 4):
        raise ValueError(raw)
    return sum(part * unit for part, unit in zip(reversed(parts), (1.0, 60.0, 3600.0, 86400.0)))


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    if path.is_dir():
        configs = sorted(path.glob("*.sumocfg"))
        if len(configs) != 1:
            found = ", ".join(c.name for c in configs) or "none"
            raise ScenarioError(f"{path}: a scenario folder needs exactly one .sumocfg (found: {found})")
        path = configs[0]
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario (give a folder or a .sumocfg file)")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ScenarioError(f"{path}: not valid XML ({exc})") from exc
    if root.tag not in _CONFIG_ROOTS:
        expected = " or ".join(f"<{tag}>" for tag in _CONFIG_ROOTS)
        raise ScenarioError(f"{path}: root element is <{root.tag}>, expected {expected}")

    def value(section: str, key: str) -> str | None:
        node = root.find(f"{section}/{key}")
        if node is None:
            node = root.find(f".//{key}")
        return None if node is None else node.get("value")

    def files(key: str) -> tuple[Path, ...]:
        raw = value("input", key) or ""
        out = []
        for name in raw.replace(",", " ").split():
            file = (path.parent / name).resolve()
            if not file.is_file():
                raise ScenarioError(f"{path}: <{key}> names {name!r}, which does not exist")
            out.append(file)
        return tuple(out)

    nets = files("net-file")
    if len(nets) != 1:
        raise ScenarioError(f"{path}: needs exactly one <net-file>")

    def seconds(key: str, default: float) -> float:
        raw = value("time", key)
        try:
            return default if raw is None else _sumo_time_s(raw)
        except ValueError:
            raise ScenarioError(f"{path}: <{key} value={raw!r}> is not a time (seconds, or h:m:s)") from None

    begin, end = seconds("begin", 0.0), seconds("end", 3600.0)
    if end <= begin:
        raise ScenarioError(f"{path}: end ({end}) must be after begin ({begin})")
    name = path.parent.name if path.parent.name else path.stem
    return Scenario(name, path.resolve(), nets[0], files("route-files"), files("additional-files"), begin, end)
