"""SUMO as a source of detector frames and a sink of signal commands.

The only module that imports traci or libsumo. libsumo runs SUMO inside this
process (fast, one simulation per process); TraCI talks to a `sumo` child
process over a socket and reads everything through subscriptions, one round
trip per step. Both give identical results for the same seed.
"""
from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from .detectors import DETECTOR_MODES, LoopEstimator, LoopLayout, scenario_layout, sparse_layout, standard_layout
from .engine import SignalCommands
from .frame import DetectorFrame, EmergencyVehicle
from .network import Network
from .scenario import Scenario, ScenarioError
from .sumo_home import ensure_sumo_home, sumo_binary, sumo_version

__all__ = ["SumoSimulation", "SumoOptions", "EmergencyAudit", "BACKENDS", "SimulationError", "count_emergency_braking",
           "summarize_log"]


class SimulationError(RuntimeError):
    """SUMO refused or stopped a run: the scenario, and SUMO's own message."""

BACKENDS = ("libsumo", "traci")
ACTUATED_PROGRAM_ID = "citybrain-actuated"
# SUMO's own defaults for actuated phases without minDur/maxDur (netconvert --tls.min-dur/--tls.max-dur).
_ACTUATED_MIN_DUR_S, _ACTUATED_MAX_DUR_S = 5.0, 50.0


@dataclass(frozen=True)
class SumoOptions:
    backend: str = "libsumo"
    seed: int = 42
    begin_s: float | None = None
    end_s: float | None = None
    native_program: str | None = None   # None: we control signals; else "static" or "actuated"
    detectors: str = "auto"             # one of DETECTOR_MODES: what read_frame sees
    control_period_s: float = 1.0       # time between read_frame calls (loops aggregate over it)
    sumo_home: str | None = None        # another SUMO installation (its bin/sumo), run through TraCI
    layout_seed: int = 0                # detectors "sparse": which random layout (detectors.sparse_layout)
    # Each signal's own controller runs the city's program as our compiler repaired it
    # (`Network.program_state_repairs`), for signals handed back to it (Engine(own_controllers)).
    safe_programs: bool = False


# The programID of a city program with our repairs (SumoOptions.safe_programs).
SAFE_PROGRAM_ID = "citybrain-safe"


# The elements that make up most of a net file.
_BULK_TAGS = frozenset(("edge", "junction", "connection"))


def _open_xml(path: str):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


class SumoSimulation:
    """One running SUMO simulation. Use as a context manager."""

    def __init__(self, scenario: Scenario, network: Network, options: SumoOptions, workdir: Path | None = None):
        if options.backend not in BACKENDS:
            raise ValueError(f"unknown backend {options.backend!r}; choose from {', '.join(BACKENDS)}")
        if options.detectors not in DETECTOR_MODES:
            raise ValueError(f"unknown detector mode {options.detectors!r}; choose from {', '.join(DETECTOR_MODES)}")
        if options.sumo_home and options.backend == "libsumo":
            raise ValueError("libsumo runs only the SUMO of the eclipse-sumo package; another SUMO installation "
                             "needs the traci backend")
        self.scenario = scenario
        self.network = network
        self.options = options
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="citybrain-")
        self.workdir = Path(workdir or self._tmp.name)
        self.tripinfo_path = self.workdir / "tripinfo.xml"
        self.log_path = self.workdir / "sumo.log"
        self.begin_s, self.end_s = scenario.window(options.begin_s, options.end_s)
        self.sumo_version = ""                      # known once started
        self.teleports = 0
        self.loaded_veh = 0
        self.departed_veh = 0
        self.arrived_veh = 0
        self._api = None
        self._console = None                        # the run's sumo-console.log, open from the first SUMO call
        self._vehicles = np.zeros(network.n_lanes)
        self._halting = np.zeros(network.n_lanes)
        self._occupancy = np.zeros(network.n_lanes)
        self.emergency_ids: list[str] = []          # every emergency vehicle that departed, in order
        self._emergency_now: list[str] = []         # those still driving
        self.emergency_audit = EmergencyAudit()
        self.detectors, self.loops, self.areas = self._detector_layout(options.detectors)
        self._area_lanes = np.array(sorted({lane for _, lane in self.areas}), dtype=np.int64)
        # Lanes whose queue the controllers see: every lane with exact counts or the
        # standard layout; with the scenario's own detectors or a sparse layout, the
        # approach lanes with a loop and the lanes of its lane-area detectors.
        self.observed_lanes = np.ones(network.n_lanes, dtype=bool)
        # Of those, lanes seen only by loops upstream: their departures are modelled.
        self.modelled_lanes = np.zeros(network.n_lanes, dtype=bool)
        if self.detectors in ("scenario", "sparse"):
            self.observed_lanes[:] = False
            self.observed_lanes[self._area_lanes] = True
            if self.loops is not None:
                self.observed_lanes[self.loops.lane] = True
                self.modelled_lanes[self.loops.upstream_only] = True
                self.modelled_lanes[self._area_lanes] = False
        self._estimator: LoopEstimator | None = None
        if self.loops is not None:
            self._estimator = LoopEstimator(network, self.loops)
            self._passed = np.zeros(self.loops.n_loops)
            self._occupied = np.zeros(self.loops.n_loops)

    def _detector_layout(self, mode: str) -> tuple[str, LoopLayout | None, tuple[tuple[str, int], ...]]:
        """The mode this run uses ("auto" resolved), its loops if any, and its
        lane-area detectors as (detector id, lane index)."""
        if self.options.native_program is not None:
            return "native", None, ()       # SUMO's own programs read SUMO's own detectors
        if mode == "loops":
            return mode, standard_layout(self.network), ()
        if mode == "sparse":
            return mode, sparse_layout(self.network, self.options.layout_seed), ()
        if mode in ("auto", "scenario"):
            layout = scenario_layout(self.network, self.scenario.induction_loops())
            lane_index = self.network.lane_index
            areas = tuple((area.detector_id, lane_index[area.lane]) for area in self.scenario.lane_area_detectors()
                          if area.lane in lane_index)
            if layout is not None or areas:
                return "scenario", layout, areas
            if mode == "scenario":
                raise ScenarioError(f"{self.scenario.config}: --detectors scenario, but its additional files "
                                    "define no induction loop on an approach lane of a signal and no lane-area "
                                    "detector on a lane the signals see")
        return "lanes", None, ()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "SumoSimulation":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        ensure_sumo_home()
        # Outputs the scenario's own files ask for go to the run's folder, never the scenario's.
        additional = [self._with_outputs_here(path) for path in self.scenario.additional_files]
        if self.options.native_program == "actuated":
            additional.append(self._write_actuated_programs())
        if self.options.safe_programs and any(self.network.program_state_repairs):
            additional.append(self._write_safe_programs())
        if self.loops is not None:
            additional.append(self._write_loops())
        binary = sumo_binary("sumo", self.options.sumo_home)
        version = sumo_version(binary)
        self.sumo_version = ".".join(map(str, version))
        args = [
            binary, "-c", str(self.scenario.config),
            "--seed", str(self.options.seed),
            "--begin", _fmt(self.begin_s), "--end", _fmt(self.end_s),
            "--tripinfo-output", str(self.tripinfo_path),
            # Trips still under way or waiting to depart at the end, for resco_delay_s.
            "--tripinfo-output.write-unfinished", "true",
            "--log", str(self.log_path),
            "--no-step-log", "true", "--duration-log.disable", "true",
        ]
        if version >= (1, 10):
            # SUMO 1.9 writes undeparted trips with write-unfinished, and rejects this as a repeat of it.
            args += ["--tripinfo-output.write-undeparted", "true"]
        args += self._redirected_outputs()
        if additional:
            args += ["--additional-files", ",".join(str(p) for p in additional)]
        try:
            with self._console_to_file():
                if self.options.backend == "libsumo":
                    import libsumo as api
                    api.start(args)
                else:
                    import traci as api
                    # SUMO's own messages go to its --log file.
                    api.start(args, label=f"citybrain-{id(self)}", stdout=subprocess.DEVNULL)
                    api.switch(f"citybrain-{id(self)}")
        except Exception as exc:   # libsumo's and traci's errors carry unpicklable SWIG objects
            self._close_console()   # no close() follows a start that failed
            raise SimulationError(f"{self.scenario.config}: SUMO would not run it: {self._sumo_error(exc)}") from None
        self._api = api
        self.step_s = api.simulation.getDeltaT()
        if self.options.native_program == "actuated":
            for signal_id in self.network.signal_ids:
                api.trafficlight.setProgram(signal_id, ACTUATED_PROGRAM_ID)
        # The program each signal's own controller runs, for handing a signal back to it.
        self._own_programs = [api.trafficlight.getProgram(signal_id) for signal_id in self.network.signal_ids]
        if self.options.backend == "traci":
            self._subscribe()
        ensure_sumo_home()  # `import libsumo` resets SUMO_HOME; keep ours for later tool calls

    def _sumo_error(self, exc: Exception) -> str:
        """SUMO's first error line from its log, else the exception's own text."""
        for path in (self.log_path, self.workdir / "sumo-console.log"):
            if path.is_file():
                with open(path, errors="replace") as log:
                    for line in log:
                        if line.startswith("Error:"):
                            return line[len("Error:"):].strip()
        return " ".join(str(exc).split()) or type(exc).__name__

    @contextmanager
    def _console_to_file(self):
        """SUMO also prints every message it logs on the console; send the process's
        own stdout and stderr (file descriptors 1 and 2) to the run's folder meanwhile,
        so warnings do not flood the terminal around the progress bar."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if self._console is None:   # opened once per run: this wraps every SUMO step
            self._console = open(self.workdir / "sumo-console.log", "ab")
        saved = [os.dup(1), os.dup(2)]
        os.dup2(self._console.fileno(), 1)
        os.dup2(self._console.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)

    def _redirected_outputs(self) -> list[str]:
        """Command-line overrides sending each output file the .sumocfg names into the run's folder."""
        try:
            root = ET.parse(self.scenario.config).getroot()
        except ET.ParseError:
            return []
        args = []
        for element in root.iter():
            key, value = element.tag, element.get("value")
            # The tripinfo and the log are ours already (`start`).
            if value and key != "tripinfo-output" and (key.endswith("-output") or key in _OUTPUT_FILE_OPTIONS):
                args += [f"--{key}", str(self.workdir / f"scenario-{Path(value).name}")]
        return args

    def _with_outputs_here(self, path: Path) -> Path:
        """`path`, or where it names output files (`file`, `output` attributes of
        detectors, edge data, probes), a copy in the run's folder writing them there."""
        try:
            tree = ET.parse(path)
        except (ET.ParseError, OSError):
            return path   # SUMO itself will say what is wrong with it
        changed = False
        for element in tree.getroot().iter():
            for key in ("file", "output"):
                value = element.get(key)
                if value and value not in _NULL_OUTPUTS:
                    element.set(key, str(self.workdir / f"scenario-{Path(value).name}"))
                    changed = True
        if not changed:
            return path
        copy = self.workdir / f"scenario-{path.name}"
        tree.write(copy)
        return copy

    def close(self) -> None:
        if self._api is not None:
            with self._console_to_file():   # SUMO prints its closing statistics
                self._api.close()
            self._api = None
        self._close_console()

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def time_s(self) -> float:
        return self._api.simulation.getTime()

    # -- the loop ----------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Run SUMO for `seconds` of simulated time (whole steps)."""
        api = self._api
        vehicle = api.vehicle
        for _ in range(max(1, round(seconds / self.step_s))):
            try:
                with self._console_to_file():
                    api.simulationStep()
            except Exception as exc:   # libsumo's and traci's errors carry unpicklable SWIG objects
                raise SimulationError(f"{self.scenario.config}: SUMO stopped at {self.time_s:g} s: "
                                      f"{self._sumo_error(exc)}") from None
            self.teleports += api.simulation.getStartingTeleportNumber()
            self.loaded_veh += api.simulation.getLoadedNumber()
            self.departed_veh += api.simulation.getDepartedNumber()
            self.arrived_veh += api.simulation.getArrivedNumber()
            for vehicle_id in api.simulation.getDepartedIDList():
                if vehicle.getVehicleClass(vehicle_id) == "emergency":
                    self.emergency_ids.append(vehicle_id)
                    self._emergency_now.append(vehicle_id)
            if self._emergency_now:
                arrived = set(api.simulation.getArrivedIDList())
                self._emergency_now = [v for v in self._emergency_now if v not in arrived]
                self._audit_emergency()

    def read_frame(self) -> DetectorFrame:
        if self.detectors not in ("lanes", "native"):
            return self._read_detectors()
        lane_api = self._api.lane
        if self.options.backend == "traci":
            results = lane_api.getAllSubscriptionResults()
            for i, lane_id in enumerate(self.network.lane_ids):
                values = results[lane_id]
                self._vehicles[i] = values[_VAR_VEHICLES]
                self._halting[i] = values[_VAR_HALTING]
                self._occupancy[i] = values[_VAR_OCCUPANCY]
        else:
            vehicles, halting, occupancy = (
                lane_api.getLastStepVehicleNumber, lane_api.getLastStepHaltingNumber, lane_api.getLastStepOccupancy)
            for i, lane_id in enumerate(self.network.lane_ids):
                self._vehicles[i] = vehicles(lane_id)
                self._halting[i] = halting(lane_id)
                self._occupancy[i] = occupancy(lane_id)
        return DetectorFrame(self.time_s, self._vehicles.copy(), self._halting.copy(), self._occupancy.copy(),
                             self._read_emergency())

    def _read_detectors(self) -> DetectorFrame:
        """A frame from the detectors alone. Loops: what entered each in the period
        just ended and how long it was occupied, turned into lane counts by the
        estimator. Lane-area detectors: their counts, for their lane, instead."""
        emergency = self._read_emergency()
        if self._estimator is not None:
            states = self.read_signal_states() if self._estimator.needs_signal_states else None
            frame = self._estimator.frame(self.time_s, *self._read_loops(), emergency, states)
        else:
            n = self.network.n_lanes
            frame = DetectorFrame(self.time_s, np.zeros(n), np.zeros(n), np.zeros(n), emergency)
        if self.areas:
            self._read_areas(frame)
        return frame

    def _read_areas(self, frame: DetectorFrame) -> None:
        area_api = self._api.lanearea
        for values in (frame.vehicles, frame.halting, frame.occupancy):
            values[self._area_lanes] = 0.0
        results = area_api.getAllSubscriptionResults() if self.options.backend == "traci" else None
        for detector_id, lane in self.areas:
            if results is not None:
                values = results[detector_id]
                vehicles, halting, occupancy = values[_VAR_VEHICLES], values[_VAR_HALTING], values[_VAR_OCCUPANCY]
            else:
                vehicles = area_api.getLastStepVehicleNumber(detector_id)
                halting = area_api.getLastStepHaltingNumber(detector_id)
                occupancy = area_api.getLastStepOccupancy(detector_id)
            frame.vehicles[lane] += vehicles
            frame.halting[lane] += halting
            frame.occupancy[lane] = max(frame.occupancy[lane], occupancy / 100.0)
        # A zone's halting count follows its own rule and can exceed its vehicle count for a step.
        np.minimum(frame.halting, frame.vehicles, out=frame.halting)

    def _read_loops(self) -> tuple[np.ndarray, np.ndarray]:
        """Vehicles that entered each loop in the period just ended, and the share of it occupied."""
        loop_api, ids = self._api.inductionloop, self.loops.loop_ids
        if self.options.backend == "traci":
            results = loop_api.getAllSubscriptionResults()
            for j, loop_id in enumerate(ids):
                values = results[loop_id]
                self._passed[j] = values[_VAR_INTERVAL_NUMBER]
                self._occupied[j] = values[_VAR_INTERVAL_OCCUPANCY]
        else:
            passed, occupied = loop_api.getIntervalVehicleNumber, loop_api.getIntervalOccupancy
            for j, loop_id in enumerate(ids):
                self._passed[j] = passed(loop_id)
                self._occupied[j] = occupied(loop_id)
        return self._passed, self._occupied / 100.0

    def _read_emergency(self) -> tuple[EmergencyVehicle, ...]:
        """Emergency vehicles as a camera or AVL feed would report them: position,
        speed and the route still ahead (all vehicles of vClass "emergency")."""
        if not self._emergency_now:
            return ()
        vehicle, edges, now = self._api.vehicle, self.network.edge_index, self.time_s
        out = []
        for vehicle_id in self._emergency_now:
            route = vehicle.getRoute(vehicle_id)
            index = max(vehicle.getRouteIndex(vehicle_id), 0)
            road = vehicle.getRoadID(vehicle_id)
            if road.startswith(":"):
                # Inside a junction: at the stop line of the edge it came from.
                edge = edges[route[index]]
                position = float(self.network.edge_length_m[edge])
            elif road in edges:
                edge, position = edges[road], vehicle.getLanePosition(vehicle_id)
            else:
                continue  # not yet inserted on the network
            ahead = tuple(edges[e] for e in route[index:] if e in edges)
            out.append(EmergencyVehicle(vehicle_id, edge, position, vehicle.getSpeed(vehicle_id), ahead, -1,
                                        1, now))
        return tuple(out)

    def _audit_emergency(self) -> None:
        """Record the signal each emergency vehicle faces while it is within its
        stopping distance of it (where a non-green would make it brake)."""
        vehicle = self._api.vehicle
        for vehicle_id in self._emergency_now:
            upcoming = vehicle.getNextTLS(vehicle_id)
            if not upcoming:
                continue
            signal_id, _, distance_m, state = upcoming[0]
            self.emergency_audit.observe(vehicle_id, signal_id, distance_m, vehicle.getSpeed(vehicle_id), state)

    def apply(self, commands: SignalCommands) -> None:
        set_state = self._api.trafficlight.setRedYellowGreenState
        for signal, state in zip(commands.signals, commands.states):
            set_state(self.network.signal_ids[signal], state)
        for signal in commands.released.tolist():
            self._release(signal)

    def _release(self, signal: int) -> None:
        """Hand the signal back to its own program, at the phase showing what it shows now."""
        lights = self._api.trafficlight
        signal_id = self.network.signal_ids[signal]
        shown = lights.getRedYellowGreenState(signal_id)
        program_id = self._own_programs[signal]
        logic = next(logic for logic in lights.getAllProgramLogics(signal_id) if logic.programID == program_id)
        phase = next((k for k, p in enumerate(logic.phases) if p.state == shown), None)
        if phase is None:
            raise RuntimeError(f"signal {signal_id!r} released while showing {shown!r}, "
                               f"which its program {program_id!r} has no phase for")
        lights.setProgram(signal_id, program_id)
        lights.setPhase(signal_id, phase)

    def read_signal_states(self) -> list[str]:
        if self.options.backend == "traci":
            results = self._api.trafficlight.getAllSubscriptionResults()
            return [results[sid][_VAR_TLS_STATE] for sid in self.network.signal_ids]
        get_state = self._api.trafficlight.getRedYellowGreenState
        return [get_state(sid) for sid in self.network.signal_ids]

    def running_veh(self) -> int:
        """Vehicles on the network now."""
        return self._api.vehicle.getIDCount()

    def queued_veh(self) -> int:
        """Vehicles below 0.1 m/s on the lanes the signals see: SUMO's own count, whatever
        the detector mode (read on demand, not per step)."""
        halting = self._api.lane.getLastStepHaltingNumber
        return sum(halting(lane_id) for lane_id in self.network.lane_ids)

    def mean_delay_so_far_s(self) -> float | None:
        """Mean timeLoss + departDelay of the vehicles arrived so far (SUMO's tripinfo
        device); None from a SUMO too old to report it (1.9)."""
        get = self._api.simulation.getParameter
        time_loss, depart_delay = get("", "device.tripinfo.timeLoss"), get("", "device.tripinfo.departDelay")
        if not time_loss or not depart_delay:
            return None
        return float(time_loss) + float(depart_delay)

    def running(self) -> bool:
        return self.time_s < self.end_s - 1e-9

    # -- helpers -----------------------------------------------------------
    def _subscribe(self) -> None:
        api = self._api
        for detector_id, _ in self.areas:
            api.lanearea.subscribe(detector_id, [_VAR_VEHICLES, _VAR_HALTING, _VAR_OCCUPANCY])
        if self.loops is not None:
            for loop_id in self.loops.loop_ids:
                api.inductionloop.subscribe(loop_id, [_VAR_INTERVAL_NUMBER, _VAR_INTERVAL_OCCUPANCY])
        elif self.detectors in ("lanes", "native"):
            for lane_id in self.network.lane_ids:
                api.lane.subscribe(lane_id, [_VAR_VEHICLES, _VAR_HALTING, _VAR_OCCUPANCY])
        for signal_id in self.network.signal_ids:
            api.trafficlight.subscribe(signal_id, [_VAR_TLS_STATE])

    def _write_actuated_programs(self) -> Path:
        """The net's own phases as SUMO actuated programs (SUMO places the loops)."""
        lines = ["<additional>"]
        for signal_id, program in zip(self.network.signal_ids, self.network.programs):
            lines.append(f'    <tlLogic id="{signal_id}" type="actuated" programID="{ACTUATED_PROGRAM_ID}" offset="0">')
            for state, duration, min_dur, max_dur in program:
                if any(ch in "Gg" for ch in state) and "y" not in state:
                    lo = min_dur if min_dur >= 0 else min(_ACTUATED_MIN_DUR_S, duration)
                    hi = max_dur if max_dur >= 0 else max(_ACTUATED_MAX_DUR_S, duration)
                    lines.append(f'        <phase duration="{_fmt(duration)}" state="{state}" '
                                 f'minDur="{_fmt(lo)}" maxDur="{_fmt(hi)}"/>')
                else:
                    lines.append(f'        <phase duration="{_fmt(duration)}" state="{state}"/>')
            lines.append("    </tlLogic>")
        lines.append("</additional>")
        path = self.workdir / "actuated.add.xml"
        path.write_text("\n".join(lines) + "\n")
        return path


    def _write_safe_programs(self) -> Path:
        """The `<tlLogic>` each repaired signal runs, as written (type, parameters, phase
        times, `next`) but with the repaired states. Loaded last, it is the program SUMO
        runs for that signal."""
        net = self.network
        wanted: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
        for signal, repairs in enumerate(net.program_state_repairs):
            if repairs:
                path, program_id = net.program_source[signal]
                wanted.setdefault(path, {})[net.signal_ids[signal], program_id] = dict(repairs)
        root = ET.Element("additional")
        for path, programs in wanted.items():
            with _open_xml(path) as stream:
                events = ET.iterparse(stream, events=("start", "end"))
                _, source_root = next(events)
                for event, element in events:
                    if event != "end":
                        continue
                    if element.tag in _BULK_TAGS:
                        source_root.clear()     # a city's net is large: keep none of it
                    if element.tag != "tlLogic":
                        continue
                    repairs = programs.get((element.get("id"), element.get("programID", "0")))
                    if repairs is not None:
                        element.set("programID", SAFE_PROGRAM_ID)
                        for phase in element.iter("phase"):
                            phase.set("state", repairs.get(phase.get("state"), phase.get("state")))
                        element.tail = "\n"
                        root.append(element)
        path = self.workdir / "safe-programs.add.xml"
        ET.ElementTree(root).write(path, encoding="unicode")
        return path

    def _write_loops(self) -> Path:
        """The loop layout as SUMO E1 detectors aggregating over one control period
        (a scenario's own loops get a twin of ours at the same place, since theirs
        aggregate over whatever period the scenario chose)."""
        period = _fmt(self.options.control_period_s)
        lines = ["<additional>"]
        for loop_id, lane, position in zip(self.loops.loop_ids, self.loops.loop_lane, self.loops.loop_position_m):
            lines.append(f'    <inductionLoop id={quoteattr(loop_id)} lane={quoteattr(self.network.lane_ids[lane])} '
                         f'pos="{position:.2f}" period="{period}" file="NUL"/>')
        lines.append("</additional>")
        path = self.workdir / "loops.add.xml"
        path.write_text("\n".join(lines) + "\n")
        return path


class EmergencyAudit:
    """What each emergency vehicle met at each signal it passed.

    A pass counts as *not green* when the vehicle's link was not green ('G'/'g')
    at any step while the vehicle was within the distance it needs to stop
    (comfortable deceleration, plus one second of reaction)."""

    DECEL_MPS2 = 4.5

    def __init__(self) -> None:
        self.passes: dict[tuple[str, str, int], bool] = {}   # (vehicle, signal, n-th pass) -> all green
        self._current: dict[str, tuple[str, int, float]] = {}   # vehicle -> (signal, n-th pass, distance)

    def observe(self, vehicle_id: str, signal_id: str, distance_m: float, speed_mps: float, state: str) -> None:
        previous = self._current.get(vehicle_id)
        if previous is None or previous[0] != signal_id or distance_m > previous[2] + 1.0:
            nth = 0 if previous is None else previous[1] + 1
            self.passes[(vehicle_id, signal_id, nth)] = True
        else:
            nth = previous[1]
        self._current[vehicle_id] = (signal_id, nth, distance_m)
        stopping_m = speed_mps * speed_mps / (2 * self.DECEL_MPS2) + speed_mps * 1.0 + 2.0
        if distance_m <= stopping_m and state not in "Gg":
            self.passes[(vehicle_id, signal_id, nth)] = False

    def as_dict(self) -> dict:
        not_green = [f"{v}@{s}" for (v, s, _), green in self.passes.items() if not green]
        return {"signals_passed": len(self.passes), "not_green": len(not_green), "not_green_at": not_green[:20]}


# SUMO's names for "write nothing".
_NULL_OUTPUTS = ("NUL", "/dev/null")
# Output-file options of SUMO's configuration whose names do not end in "-output".
_OUTPUT_FILE_OPTIONS = ("message-log", "error-log", "netstate-dump")


def summarize_log(log_path: Path, top: int = 12) -> dict[str, int]:
    """SUMO's warnings and errors in a run's log, counted by kind: the message with
    ids and numbers taken out (e.g. "Warning: Teleporting vehicle '*'; waited too
    long (jam), lane='*', time=#.")."""
    kinds: Counter = Counter()
    if log_path.is_file():
        with open(log_path, errors="replace") as log:
            for line in log:
                if line.startswith(("Warning:", "Error:")):
                    kind = re.sub(r"'[^']*'", "'*'", line.strip())
                    kinds[re.sub(r"-?\d+(\.\d+)?", "#", kind)[:120]] += 1
    return dict(kinds.most_common(top))


def count_emergency_braking(log_path: Path) -> int:
    """SUMO's "performs emergency braking" warnings in a run's log."""
    if not log_path.is_file():
        return 0
    with open(log_path, errors="replace") as log:
        return sum("emergency braking" in line for line in log)


def _fmt(seconds: float) -> str:
    return f"{seconds:g}"


# TraCI variable ids (traci.constants), spelled out so libsumo runs need not import traci.
# The first three mean the same for lanes and lane-area detectors.
_VAR_VEHICLES = 0x10      # LAST_STEP_VEHICLE_NUMBER
_VAR_HALTING = 0x14       # LAST_STEP_VEHICLE_HALTING_NUMBER
_VAR_OCCUPANCY = 0x13     # LAST_STEP_OCCUPANCY
_VAR_TLS_STATE = 0x20     # TL_RED_YELLOW_GREEN_STATE
# inductionloop, aggregated over its period. Read right after the period's last
# step (before SUMO starts the next interval), the "current" interval is the one just ended.
_VAR_INTERVAL_NUMBER = 0x25      # vehicles that entered the loop
_VAR_INTERVAL_OCCUPANCY = 0x23   # % of the period the loop was occupied
