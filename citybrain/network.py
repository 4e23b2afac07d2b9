"""Compile a SUMO `.net.xml` into integer-indexed arrays (the only sumolib importer).

The engine never sees a string id in its hot path. This module turns a SUMO net
into a `Network`: flat numpy arrays for signals, candidate green phases,
movements, conflicts, clearance timings and detection zones, plus the string
ids needed at the edges and a networkx graph for routing.

Vocabulary
- *signal*: one SUMO traffic-light (tlLogic id); it may control several junctions.
- *link*: one index of a signal's state string.
- *movement*: one vehicle connection (in-lane -> out-lane) through a link.
- *program*: the signal program SUMO runs for a signal: the scenario's own
  `<tlLogic>` from its additional files where it has one (`load_network`'s
  `programs`), else the net's.
- *phase*: a candidate green phase, taken from that program.
- *plan*: the program's cycle as a sequence of candidate greens, each with its
  green time, its window in the cycle and the city's minimum and maximum green
  (minDur/maxDur); the program's own phases between two of them (yellows,
  all-reds, interim phases that keep some greens while others clear) are the
  *interim* of that transition.
- *edge*: a SUMO road (not an internal junction lane); emergency vehicles are
  located and routed on edges.
- *zone*: what a detector sees for one lane: the lane itself plus, for
  approaches, the lanes upstream of it through unsignalised nodes up to
  `approach_range_m` (SUMO nets often split an approach at a turn bay).
"""
from __future__ import annotations

import xml.sax
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import networkx as nx
import numpy as np

from .kernels import STAGE_CROSSING, STAGE_GREEN, STAGE_INTERIM, STAGE_YELLOW
from .sumo_home import ensure_sumo_home

__all__ = ["Network", "NetworkError", "load_network", "load_scenario_network", "load_geometry", "COMPILED_FORMAT"]

# Bumped whenever a `Network` field changes meaning, so pickled copies are rebuilt
# (a copy that lacks one of its fields is rebuilt anyway: bench.cached_network).
COMPILED_FORMAT = 11

# Green level of a SUMO state character: protected green beats permissive green.
_GREEN_LEVEL = {"G": 2, "g": 1}
_DEFAULT_YELLOW_S = 3.0


class NetworkError(ValueError):
    """A SUMO net that cannot be used, with the file and element that broke it."""


@dataclass(frozen=True)
class Network:
    """A SUMO network compiled to arrays. All index arrays are int32 unless noted."""

    path: Path
    signal_ids: tuple[str, ...]
    lane_ids: tuple[str, ...]
    lane_length_m: np.ndarray          # float64 [lanes]
    lane_speed_mps: np.ndarray         # float64 [lanes]

    # Signals: link count and clearance timing from the net's own program.
    signal_n_links: np.ndarray         # [signals]
    yellow_s: np.ndarray               # float64 [signals]
    all_red_s: np.ndarray              # float64 [signals]
    # Per signal, every phase of the program SUMO runs: (state, duration_s, min_dur_s, max_dur_s),
    # with -1 where it gives no min/max duration; protected greens of foes already
    # demoted to permissive (`repairs`).
    programs: tuple[tuple[tuple[str, float, float, float], ...], ...]
    program_offset_s: np.ndarray       # float64 [signals]: the program's offset (SUMO's tlLogic offset)
    program_cycle_s: np.ndarray        # float64 [signals]: the sum of its phase durations
    # Whether the program's changes carry an all-red: intergreens timed by hand for
    # its own sequence of phases, so adaptive control keeps that cyclic order
    # (skipping none, reordering none). Elsewhere it may choose any phase.
    keeps_order: np.ndarray            # bool [signals]
    # Its program runs fixed time (SUMO type "static"); else SUMO extends its phases from
    # its own detectors (actuated, delay_based), which a fixed plan only approximates.
    program_static: np.ndarray         # bool [signals]
    # Where its program, as written, breaks the rules our safety layer keeps (foes in
    # protected green, a vehicle green ended with no yellow), the repair of each such
    # state (original -> repaired, `repairs`); its own controller may run the program
    # only so repaired (`program_source`). Empty where the program is sound.
    program_state_repairs: tuple[tuple[tuple[str, str], ...], ...]
    # A program no such repair makes safe (a green ends with no yellow after a green
    # phase, or one state would need two repairs): never left to its own controller.
    program_unsafe: np.ndarray         # bool [signals]
    # The file and programID of the `<tlLogic>` SUMO runs for it.
    program_source: tuple[tuple[str, str], ...]
    # Per link (flat, `link_offset`): the shortest yellow the program shows that link,
    # else its signal's yellow_s. What the monitor holds every yellow of that link to.
    link_yellow_s: np.ndarray          # float64 [links]
    # Per link, the shortest green the program shows it (inf if none): a city's interim
    # may release a turn for less than our minimum green, and the monitor accepts that much.
    link_green_s: np.ndarray           # float64 [links]
    # One line per program phase whose conflicting protected greens were demoted to
    # permissive: "signal 'x' phase 3: links 4, 7 G -> g (foes of links 1, 2)".
    repairs: tuple[str, ...]

    # Candidate green phases, CSR by signal: phases of signal i are phase_ptr[i]:phase_ptr[i+1].
    phase_ptr: np.ndarray              # [signals + 1]
    phase_states: tuple[str, ...]      # SUMO state string of each candidate phase
    phase_green_s: np.ndarray          # float64 [phases]: its longest green in the program
    phase_green_level: np.ndarray      # int8 [sum of links over phases], CSR by link_ptr per phase
    phase_link_ptr: np.ndarray         # [phases + 1]

    # Movements (one per vehicle connection through a signal).
    move_signal: np.ndarray            # [movements]
    move_link: np.ndarray              # [movements]
    move_in_lane: np.ndarray           # [movements] index into lane_ids
    move_out_lane: np.ndarray          # [movements]

    # Pressure terms of each phase, CSR by phase: every incoming lane with a green
    # movement counts once, minus the mean of its green out-lanes.
    term_ptr: np.ndarray               # [phases + 1]
    term_in_lane: np.ndarray
    term_out_lane: np.ndarray
    term_weight: np.ndarray            # float64

    # Conflict matrix per signal over its links, flattened: entry [off + a*n + b] is
    # True when links a and b are foes at their junction (SUMO's <request foes=...>).
    # Foes may share a green only if one of them yields ('g'); two protected greens
    # ('G') on foes are a conflicting green.
    conflict_offset: np.ndarray        # int64 [signals + 1]
    conflict: np.ndarray               # bool

    # Transitions between candidate phases of one signal, flattened like the conflict
    # matrix but over that signal's phases: True when going p -> q takes a link
    # out of green (or from protected to permissive) and so needs clearance.
    transition_offset: np.ndarray      # int64 [signals + 1]
    needs_clearance: np.ndarray        # bool
    # Pedestrian clearance: where the net's program ends a walk before the vehicles'
    # yellow (crossings red, vehicle greens on; netconvert gives 5 s), a transition that
    # takes a crossing out of green (ends_crossing, flattened as needs_clearance) first
    # shows that for crossing_clearance_s (`_pedestrian_clearance`; 0: no such stage).
    crossing_clearance_s: np.ndarray   # float64 [signals]
    ends_crossing: np.ndarray          # bool
    # The shortest time the program itself leaves between a walk ending and a vehicle
    # link of that signal turning green (inf if it never does both): the monitor holds
    # signals to the walk clearance, or to this where the city's own program gives less.
    program_walk_gap_s: np.ndarray     # float64 [signals]
    # The program's own interim between two candidate phases, where its cycle goes
    # straight from one to the other: transition t (flattened as needs_clearance)
    # shows interim_states[k] for interim_s[k], k in interim_ptr[t]:interim_ptr[t+1];
    # transitions without one get crossing clearance, yellow and all-red.
    interim_ptr: np.ndarray            # int64 [transitions + 1]
    interim_states: tuple[str, ...]
    interim_s: np.ndarray              # float64

    # The plan, CSR by signal: its steps in cycle order, each a candidate phase (local
    # index), green for plan_green_s, ending at plan_end_s into the cycle (the cycle
    # starts at phase 0 of the program, at program_offset_s), with the program's own
    # bounds on that green (sums of minDur/maxDur; -1 where it gives none).
    plan_ptr: np.ndarray               # [signals + 1]
    plan_phase: np.ndarray             # [steps]
    plan_green_s: np.ndarray           # float64 [steps]
    plan_end_s: np.ndarray             # float64 [steps]
    plan_min_s: np.ndarray             # float64 [steps]
    plan_max_s: np.ndarray             # float64 [steps]

    # Detection zones: zone of lane l sums lane counts zone_lane[k] * zone_weight[k]
    # for k in zone_ptr[l]:zone_ptr[l+1].
    zone_ptr: np.ndarray
    zone_lane: np.ndarray
    zone_weight: np.ndarray            # float64
    # Distance from lane l's stop line (upstream zones) or start (downstream zones)
    # to the near end of member zone_lane[k]: 0 for l itself.
    zone_offset_m: np.ndarray          # float64
    zone_parent: np.ndarray            # [k]: the member it was reached from (a flat index), -1 for l itself

    # Roads. Lane l lies on edge lane_edge[l]; SUMO names lane k of edge e "e_k".
    edge_ids: tuple[str, ...]
    edge_length_m: np.ndarray          # float64 [edges]
    edge_speed_mps: np.ndarray         # float64 [edges]: speed limit (fastest lane)
    edge_n_lanes: np.ndarray           # [edges]
    lane_edge: np.ndarray              # [lanes]

    # Routing graph over edge indices: an arc u -> v where a lane of u open to
    # emergency vehicles connects to a lane of v, weighted by v's free-flow
    # travel time ("travel_time_s"); "turnaround" marks U-turns, which SUMO
    # vehicles make only when all other traffic lets them. A path of nodes is a SUMO route.
    graph: nx.DiGraph = field(repr=False, compare=False)

    @property
    def n_signals(self) -> int:
        return len(self.signal_ids)

    @property
    def n_phases(self) -> int:
        return len(self.phase_states)

    @property
    def n_lanes(self) -> int:
        return len(self.lane_ids)

    @property
    def link_offset(self) -> np.ndarray:
        """Start of each signal's links in a flat array of all signals' links."""
        return np.concatenate(([0], np.cumsum(self.signal_n_links))).astype(np.int64)

    @cached_property
    def vehicle_link(self) -> np.ndarray:
        """Per link in the flat array of all signals' links: True where a vehicle
        connection goes through it (the others are crossings, or unused)."""
        mask = np.zeros(int(self.signal_n_links.sum()), dtype=bool)
        mask[self.link_offset[self.move_signal] + self.move_link] = True
        return mask

    @cached_property
    def approaches(self) -> tuple[np.ndarray, np.ndarray]:
        """(signal, lane) pairs, each once: the approach lanes of each signal."""
        pairs = np.unique(np.stack([self.move_signal, self.move_in_lane]), axis=1)
        return pairs[0].astype(np.int64), pairs[1].astype(np.int64)

    @cached_property
    def phase_lanes(self) -> tuple[np.ndarray, np.ndarray]:
        """(phase, lane) pairs, each once: the approach lanes each candidate phase
        (flat index) greens."""
        pairs = np.unique(np.stack([np.repeat(np.arange(self.n_phases), np.diff(self.term_ptr)),
                                    self.term_in_lane]), axis=1)
        return pairs[0].astype(np.int64), pairs[1].astype(np.int64)

    @cached_property
    def lane_plan_share(self) -> np.ndarray:
        """Per lane, the share of its signal's cycle the plan shows it green (0 for a
        lane that approaches no signal, or one the plan never greens)."""
        step_signal = np.repeat(np.arange(self.n_signals), np.diff(self.plan_ptr))
        step_phase = self.phase_ptr[:-1][step_signal] + self.plan_phase
        step_share = self.plan_green_s / np.maximum(self.program_cycle_s[step_signal], 1.0)
        phase_share = np.bincount(step_phase, weights=step_share, minlength=self.n_phases)
        phase, lane = self.phase_lanes
        return np.minimum(np.bincount(lane, weights=phase_share[phase], minlength=self.n_lanes), 1.0)

    def lanes_green(self, green_phase: np.ndarray, stage: np.ndarray) -> np.ndarray:
        """Per lane: whether a signal showing green_phase in stage (per signal) greens it."""
        green = stage == STAGE_GREEN
        shown = np.zeros(self.n_phases, dtype=bool)
        shown[self.phase_ptr[:-1][green] + green_phase[green]] = True
        phase, lane = self.phase_lanes
        return np.bincount(lane, weights=shown[phase], minlength=self.n_lanes) > 0

    @cached_property
    def edge_index(self) -> dict[str, int]:
        return {edge: i for i, edge in enumerate(self.edge_ids)}

    @cached_property
    def lane_index(self) -> dict[str, int]:
        return {lane: i for i, lane in enumerate(self.lane_ids)}

    def lane_edge_index(self, lane_id: str) -> int:
        """Edge index of any lane of the net by its SUMO id, or -1 if there is none."""
        edge, _, number = lane_id.rpartition("_")
        index = self.edge_index.get(edge, -1)
        if index < 0 or not number.isdigit() or int(number) >= self.edge_n_lanes[index]:
            return -1
        return index

    def transition(self, signal: int, phase: int, next_phase: int) -> int:
        """Flat index of the transition phase -> next_phase of `signal` (local phase indices)."""
        n = int(self.phase_ptr[signal + 1] - self.phase_ptr[signal])
        return int(self.transition_offset[signal]) + phase * n + next_phase

    def stage_state(self, signal: int, stage: int, phase: int, next_phase: int, stage_time_s: float) -> str:
        """The SUMO state string of `signal` `stage_time_s` into that stage."""
        if stage == STAGE_INTERIM:
            return self.interim_state(signal, phase, next_phase, stage_time_s)
        return self.signal_state(signal, stage, phase, next_phase)

    def interim_state(self, signal: int, phase: int, next_phase: int, stage_time_s: float) -> str:
        """What the program's interim from `phase` to `next_phase` shows `stage_time_s` into it."""
        transition = self.transition(signal, phase, next_phase)
        lo, hi = int(self.interim_ptr[transition]), int(self.interim_ptr[transition + 1])
        elapsed = 0.0
        for k in range(lo, hi):
            elapsed += float(self.interim_s[k])
            if stage_time_s < elapsed - 1e-9:
                return self.interim_states[k]
        return self.interim_states[hi - 1]

    def with_min_all_red(self, seconds: float) -> "Network":
        """This network with every signal's all-red raised to at least `seconds`."""
        if seconds <= 0.0:
            return self
        # The program's own interims: their trailing all-red raised, or one added after their yellow.
        ptr, states, durations = [0], [], []
        for t in range(len(self.interim_ptr) - 1):
            lo, hi = int(self.interim_ptr[t]), int(self.interim_ptr[t + 1])
            steps = list(zip(self.interim_states[lo:hi], self.interim_s[lo:hi].tolist()))
            if steps:
                last, last_s = steps[-1]
                if not any(ch in "GgyYu" for ch in last):
                    steps[-1] = (last, max(last_s, seconds))
                elif "y" in last:
                    steps.append((last.replace("y", "r").replace("u", "r"), seconds))
            states += [state for state, _ in steps]
            durations += [duration for _, duration in steps]
            ptr.append(len(states))
        return replace(self, all_red_s=np.maximum(self.all_red_s, seconds), interim_ptr=np.array(ptr, dtype=np.int64),
                       interim_states=tuple(states), interim_s=np.array(durations, dtype=np.float64))

    def phases_of(self, signal: int) -> range:
        return range(int(self.phase_ptr[signal]), int(self.phase_ptr[signal + 1]))

    def conflict_matrix(self, signal: int) -> np.ndarray:
        n = int(self.signal_n_links[signal])
        start = int(self.conflict_offset[signal])
        return self.conflict[start:start + n * n].reshape(n, n)

    def signal_state(self, signal: int, stage: int, phase: int, next_phase: int) -> str:
        """The SUMO state string for a signal showing `phase` (local index), or the
        crossing / yellow / all-red clearance from `phase` towards `next_phase`."""
        first = int(self.phase_ptr[signal])
        current = self.phase_states[first + phase]
        if stage == STAGE_GREEN:
            return current
        if stage == STAGE_INTERIM:
            raise ValueError("an interim's state depends on its time: use interim_state")
        target = self.phase_states[first + next_phase]
        # Where the walk has its own clearance, an ending crossing is red from its start on.
        walk_cleared = set()
        if self.crossing_clearance_s[signal] > 0.0:
            start = int(self.link_offset[signal])
            walk_cleared = {k for k in range(len(current)) if not self.vehicle_link[start + k]}
        chars = []
        for k, (now, then) in enumerate(zip(current, target)):
            losing = _GREEN_LEVEL.get(now, 0) > _GREEN_LEVEL.get(then, 0)
            ends = now in _GREEN_LEVEL and then not in _GREEN_LEVEL
            if stage == STAGE_CROSSING:
                chars.append("r" if k in walk_cleared and ends else now)
            elif now in _GREEN_LEVEL and losing:
                chars.append("r" if stage != STAGE_YELLOW or (k in walk_cleared and ends) else "y")
            elif now in _GREEN_LEVEL:
                chars.append(now)
            else:
                chars.append(now if now in "sOo" else "r")
        return "".join(chars)


def load_network(path: str | Path, approach_range_m: float = 150.0, programs: Mapping[str, object] | None = None,
                 min_green_s: float = 5.0) -> Network:
    """Compile the SUMO net at `path`. Raises NetworkError naming what is wrong.

    `programs`: per signal id, the program that replaces the net's own (a
    `scenario.SignalProgram`, as `Scenario.signal_programs` gives them: SUMO runs
    the program loaded last). `min_green_s`: the shortest green that counts as a
    phase of its own (`SignalTiming.min_green_s`); greens the program shows for
    less are part of an interim."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"{path}: net file not found")
    ensure_sumo_home()
    import sumolib  # only this module touches sumolib

    try:
        net = sumolib.net.readNet(str(path), withPrograms=True, withConnections=True, withFoes=True)
    except (xml.sax.SAXException, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise NetworkError(f"{path}: not a readable SUMO network ({type(exc).__name__}: {exc})") from exc
    programs = dict(programs or {})
    unknown = sorted(set(programs) - {tls.getID() for tls in net.getTrafficLights()})
    if unknown:
        raise NetworkError(f"{programs[unknown[0]].source}: no traffic light {unknown[0]!r} in {path}")
    return _compile(path, net, approach_range_m, programs, min_green_s)


def load_scenario_network(scenario) -> Network:
    """The net of a `scenario.Scenario`, with the signal programs SUMO runs for it
    (its additional files' `<tlLogic>`s replace the net's own)."""
    return load_network(scenario.net_file, programs=scenario.signal_programs())


def load_geometry(network: Network) -> dict:
    """What a map of the network needs, in metres of the net's own coordinates:
    each edge's centre line (`Network.edge_ids` order, flat [x0, y0, x1, y1, ...]),
    each signal's position (mean of the junctions it controls) and the bounds."""
    ensure_sumo_home()
    import sumolib

    net = sumolib.net.readNet(str(network.path), withPrograms=False, withConnections=True)
    shapes = []
    for edge_id in network.edge_ids:
        shape = net.getEdge(edge_id).getShape()
        shapes.append([round(coordinate, 1) for point in shape for coordinate in point[:2]])
    positions = []
    for signal_id in network.signal_ids:
        nodes = {c[0].getEdge().getToNode() for c in net.getTLS(signal_id).getConnections()}
        coords = np.array([node.getCoord()[:2] for node in nodes])
        positions.append([round(float(v), 1) for v in coords.mean(axis=0)])
    (xmin, ymin), (xmax, ymax) = net.getBoundary()[:2], net.getBoundary()[2:]
    return {"edges": shapes, "signals": positions, "bounds": [xmin, ymin, xmax, ymax]}


def _compile(path: Path, net, approach_range_m: float, overrides: dict, min_green_s: float) -> Network:
    signals = sorted(net.getTrafficLights(), key=lambda tls: tls.getID())
    lane_index: dict[str, int] = {}
    lanes: list = []

    def lane_id(lane) -> int:
        key = lane.getID()
        if key not in lane_index:
            lane_index[key] = len(lanes)
            lanes.append(lane)
        return lane_index[key]

    signal_ids, programs, n_links_list, yellow, all_red, crossing_clearance = [], [], [], [], [], []
    offsets, cycles, link_yellow, link_green, repairs, walk_gap, static, unsafe = [], [], [], [], [], [], [], []
    state_repairs, sources = [], []
    phase_ptr, phase_states, phase_green_s, phase_levels, phase_link_ptr = [0], [], [], [], [0]
    move_signal, move_link, move_in, move_out = [], [], [], []
    term_ptr, term_in, term_out, term_w = [0], [], [], []
    conflict_offset, conflict_blocks = [0], []
    transition_offset, transition_blocks, crossing_blocks = [0], [], []
    interim_ptr, interim_states, interim_s = [0], [], []
    plan_ptr, plan_phase, plan_green, plan_end, plan_min, plan_max = [0], [], [], [], [], []

    for tls in signals:
        tid = tls.getID()
        override = overrides.get(tid)
        if override is None and not tls.getPrograms() and _is_rail_signal(tls):
            continue  # rail signals are run by SUMO's own rail logic, not by a tlLogic
        if override is not None:
            where, offset_s, kind = override.source, float(override.offset_s), override.kind
            source = (override.path, override.program_id)
            states = [tuple(phase) for phase in override.phases]
            next_phases = list(override.next_phases)
        else:
            program = _main_program(path, tls)
            where, offset_s, kind = f"{path}: tlLogic {tid!r}", float(program.getOffset()), program.getType()
            source = (str(path), program._id)
            states = [(p.state, float(p.duration), float(p.minDur), float(p.maxDur)) for p in program.getPhases()]
            next_phases = [tuple(int(k) for k in p.next) for p in program.getPhases()]
        states = _cycle(states, next_phases, where)
        n_links = len(states[0][0])
        if any(len(phase[0]) != n_links for phase in states):
            raise NetworkError(f"{where}: phases have state strings of different lengths")
        connections = [(c[0], c[1], int(c[2])) for c in tls.getConnections()]
        if not connections:
            continue  # a signal that controls no vehicle connection cannot be optimised
        if max(link for _, _, link in connections) >= n_links:
            raise NetworkError(f"{where}: the net's connections use link {max(l for _, _, l in connections)}, "
                               f"beyond the program's {n_links}-link states")

        conflict = _conflicts(tls, connections, n_links)
        written = [phase[0] for phase in states]
        states, fixed = _repair_conflicts(states, conflict, _yields(tls, connections, n_links))
        vehicle_links = {link for _, _, link in connections}
        states, guarded, unguarded = _guard_green_ends(states, vehicle_links)
        repairs += [f"signal {tid!r} {line}" for line in fixed + guarded]
        mapping = {}
        for before, (after, *_) in zip(written, states):
            mapping.setdefault(before, set()).add(after)
        unsafe.append(unguarded or any(len(after) > 1 for after in mapping.values()))
        state_repairs.append(tuple((before, after.pop()) for before, after in mapping.items()
                                   if after != {before} and len(after) == 1))
        sources.append(source)
        candidates = _candidate_phases([phase[0] for phase in states], [phase[1] for phase in states], min_green_s)
        if not candidates:
            raise NetworkError(f"{where}: program has no green phase")

        signal = len(signal_ids)
        signal_ids.append(tid)
        programs.append(tuple(states))
        offsets.append(offset_s)
        static.append(kind == "static")
        cycles.append(sum(phase[1] for phase in states))
        n_links_list.append(n_links)
        yellow.append(_clearance(states, "yellow"))
        all_red.append(_clearance(states, "all_red"))
        link_yellow.append(_link_yellow_s(states, n_links, yellow[-1]))
        link_green.append(_shortest_run(states, n_links, "Gg", np.inf))
        crossing = np.array([link not in vehicle_links for link in range(n_links)])
        crossing_clearance.append(_pedestrian_clearance(states, crossing))
        walk_gap.append(_walk_gap(states, crossing))

        for in_lane, out_lane, link in connections:
            move_signal.append(signal)
            move_link.append(link)
            move_in.append(lane_id(in_lane))
            move_out.append(lane_id(out_lane))

        levels = [np.array([_GREEN_LEVEL.get(ch, 0) for ch in s], dtype=np.int8) for s in candidates]
        steps, interims = _plan(states, candidates, crossing)
        for state, level in zip(candidates, levels):
            phase_states.append(state)
            phase_green_s.append(max(green for phase, _, green, _, _ in steps if candidates[phase] == state))
            phase_levels.append(level)
            phase_link_ptr.append(phase_link_ptr[-1] + n_links)
            by_in_lane: dict[int, list[int]] = {}
            for in_lane, out_lane, link in connections:
                if level[link] > 0:
                    by_in_lane.setdefault(lane_id(in_lane), []).append(lane_id(out_lane))
            for in_idx, outs in by_in_lane.items():
                for out_idx in outs:
                    term_in.append(in_idx)
                    term_out.append(out_idx)
                    term_w.append(1.0 / len(outs))
            term_ptr.append(len(term_in))
        phase_ptr.append(len(phase_states))
        for phase, end_s, green_s, least_s, most_s in steps:
            plan_phase.append(phase)
            plan_end.append(end_s)
            plan_green.append(green_s)
            plan_min.append(least_s)
            plan_max.append(most_s)
        plan_ptr.append(len(plan_phase))

        conflict_blocks.append(conflict.ravel())
        conflict_offset.append(conflict_offset[-1] + n_links * n_links)
        clearance = np.array([[bool(np.any(a > b)) for b in levels] for a in levels], dtype=bool)
        transition_blocks.append(clearance.ravel())
        ends_crossing = np.array([[bool(np.any((a > 0) & (b == 0) & crossing)) for b in levels] for a in levels],
                                 dtype=bool)
        crossing_blocks.append(ends_crossing.ravel())
        transition_offset.append(transition_offset[-1] + len(levels) ** 2)
        for a in range(len(levels)):
            for b in range(len(levels)):
                for state, duration_s in interims.get((a, b), ()):
                    interim_states.append(state)
                    interim_s.append(duration_s)
                interim_ptr.append(len(interim_states))

    if not signal_ids:
        raise NetworkError(f"{path}: no traffic light controls a vehicle connection; nothing to optimise")

    n_direct = len(lanes)
    zone_ptr, zone_lane, zone_w, zone_offset, zone_parent = [0], [], [], [], []
    in_lanes = set(move_in)
    for idx in range(n_direct):
        direction = "upstream" if idx in in_lanes else "downstream"
        base = len(zone_lane)
        for member, weight, offset_m, parent in _zone(lanes[idx], direction, approach_range_m):
            zone_lane.append(lane_id(member))
            zone_w.append(weight)
            zone_offset.append(offset_m)
            zone_parent.append(base + parent if parent >= 0 else -1)
        zone_ptr.append(len(zone_lane))
    # Lanes added only as zone members get empty zones of their own.
    zone_ptr.extend([zone_ptr[-1]] * (len(lanes) - n_direct))

    edges = [e for e in net.getEdges(withInternal=False) if e.getFunction() not in ("walkingarea", "crossing")]
    edge_index = {e.getID(): i for i, e in enumerate(edges)}
    i32 = lambda values: np.asarray(values, dtype=np.int32)  # noqa: E731
    return Network(
        path=path,
        signal_ids=tuple(signal_ids),
        lane_ids=tuple(lane.getID() for lane in lanes),
        lane_length_m=np.array([lane.getLength() for lane in lanes], dtype=np.float64),
        lane_speed_mps=np.array([lane.getSpeed() for lane in lanes], dtype=np.float64),
        signal_n_links=i32(n_links_list),
        yellow_s=np.array(yellow, dtype=np.float64),
        all_red_s=np.array(all_red, dtype=np.float64),
        programs=tuple(programs),
        program_offset_s=np.array(offsets, dtype=np.float64),
        program_cycle_s=np.array(cycles, dtype=np.float64),
        keeps_order=np.array(all_red, dtype=np.float64) > 0.0,
        program_static=np.array(static, dtype=bool),
        program_state_repairs=tuple(state_repairs),
        program_unsafe=np.array(unsafe, dtype=bool),
        program_source=tuple(sources),
        link_yellow_s=np.concatenate(link_yellow),
        link_green_s=np.concatenate(link_green),
        repairs=tuple(repairs),
        phase_ptr=i32(phase_ptr),
        phase_states=tuple(phase_states),
        phase_green_s=np.array(phase_green_s, dtype=np.float64),
        phase_green_level=np.concatenate(phase_levels).astype(np.int8),
        phase_link_ptr=i32(phase_link_ptr),
        move_signal=i32(move_signal),
        move_link=i32(move_link),
        move_in_lane=i32(move_in),
        move_out_lane=i32(move_out),
        term_ptr=i32(term_ptr),
        term_in_lane=i32(term_in),
        term_out_lane=i32(term_out),
        term_weight=np.array(term_w, dtype=np.float64),
        conflict_offset=np.asarray(conflict_offset, dtype=np.int64),
        conflict=np.concatenate(conflict_blocks),
        transition_offset=np.asarray(transition_offset, dtype=np.int64),
        needs_clearance=np.concatenate(transition_blocks),
        crossing_clearance_s=np.array(crossing_clearance, dtype=np.float64),
        program_walk_gap_s=np.array(walk_gap, dtype=np.float64),
        ends_crossing=np.concatenate(crossing_blocks),
        interim_ptr=np.asarray(interim_ptr, dtype=np.int64),
        interim_states=tuple(interim_states),
        interim_s=np.array(interim_s, dtype=np.float64),
        plan_ptr=i32(plan_ptr),
        plan_phase=i32(plan_phase),
        plan_green_s=np.array(plan_green, dtype=np.float64),
        plan_end_s=np.array(plan_end, dtype=np.float64),
        plan_min_s=np.array(plan_min, dtype=np.float64),
        plan_max_s=np.array(plan_max, dtype=np.float64),
        zone_ptr=i32(zone_ptr),
        zone_lane=i32(zone_lane),
        zone_weight=np.array(zone_w, dtype=np.float64),
        zone_offset_m=np.array(zone_offset, dtype=np.float64),
        zone_parent=i32(zone_parent),
        edge_ids=tuple(edge_index),
        edge_length_m=np.array([e.getLength() for e in edges], dtype=np.float64),
        edge_speed_mps=np.array([e.getSpeed() for e in edges], dtype=np.float64),
        edge_n_lanes=i32([e.getLaneNumber() for e in edges]),
        lane_edge=i32([edge_index.get(lane.getEdge().getID(), -1) for lane in lanes]),
        graph=_routing_graph(edges, edge_index),
    )


def _main_program(path: Path, tls):
    programs = tls.getPrograms()
    if not programs:
        raise NetworkError(f"{path}: tlLogic {tls.getID()!r}: no program in the net")
    # SUMO runs the program loaded last.
    program = list(programs.values())[-1]
    if not program.getPhases():
        raise NetworkError(f"{path}: tlLogic {tls.getID()!r}: program {program._id!r} has no phases")
    return program


def _guard_green_ends(states: list[tuple[str, float, float, float]], vehicle_links: set[int]
                      ) -> tuple[list[tuple[str, float, float, float]], list[str], bool]:
    """The program with no vehicle link taken from green straight to red where the
    phase before is itself a change (shows a yellow): there the link shows yellow
    too, for that phase's time (the city's own clearance, for one link more).
    Returns the phases, one line per phase changed, and whether some green still
    ends with no yellow (after a phase that shows none, which cannot be repaired
    in place)."""
    guarded, lines, left = [], [], False
    for number, (state, *rest) in enumerate(states):
        after = states[(number + 1) % len(states)][0]
        ended = [link for link in sorted(vehicle_links) if state[link] in "Gg" and after[link] in "rs"]
        if ended and "y" in state:
            chars = list(state)
            for link in ended:
                chars[link] = "y"
            state = "".join(chars)
            lines.append(f"phase {number}: links {', '.join(map(str, ended))} g -> y (green ended without yellow)")
        elif ended:
            left = True
        guarded.append((state, *rest))
    return guarded, lines, left


def _cycle(phases: list, next_phases: list[tuple[int, ...]], where: str) -> list:
    """The phases in the order SUMO runs them from phase 0: each phase's `next` (the
    first, where it names several) or else the one after it. Phases never reached
    (kept for switching programs, or for a controller's special sequences) are
    dropped."""
    if not any(next_phases):
        return phases
    order, k = [], 0
    while k not in order:
        order.append(k)
        following = next_phases[k] if k < len(next_phases) else ()
        k = following[0] if following else (k + 1) % len(phases)
        if not 0 <= k < len(phases):
            raise NetworkError(f"{where}: a phase's next names phase {k}; the program has {len(phases)}")
    return [phases[i] for i in order[order.index(k):]]


def _is_rail_signal(tls) -> bool:
    nodes = {c[0].getEdge().getToNode() for c in tls.getConnections()}
    return bool(nodes) and all(n.getType() in ("rail_signal", "rail_crossing") for n in nodes)


def _candidate_phases(states: list[str], durations: list[float], min_green_s: float) -> list[str]:
    """Green phases of a program, in program order, without duplicates, without
    greens the program never shows for min_green_s (an interim step: a turn
    released a second early, a lane held through a change), and without phases
    that are dominated link by link by another (e.g. a short leading green that
    only keeps part of the next phase green)."""
    greens = []
    for state in states:
        if "y" in state or "u" in state or not any(ch in _GREEN_LEVEL for ch in state):
            continue
        if state not in greens:
            greens.append(state)
    longest = {state: max((green for run_state, green in _runs(states, durations) if run_state == state),
                          default=0.0) for state in greens}
    lasting = [state for state in greens if longest[state] >= min_green_s - 1e-9]
    greens = lasting or greens
    levels = [[_GREEN_LEVEL.get(ch, 0) for ch in s] for s in greens]

    def dominated(i: int) -> bool:
        return any(
            j != i and all(a <= b for a, b in zip(levels[i], levels[j])) and levels[i] != levels[j]
            for j in range(len(greens))
        )

    return [s for i, s in enumerate(greens) if not dominated(i)]


def _runs(states: list[str], durations: list[float]) -> list[tuple[str, float]]:
    """The program's cycle as runs of one state: (state, total duration), in order,
    a run that wraps round the cycle's end counted once."""
    n = len(states)
    start = next((j for j in range(n) if states[j] != states[j - 1]), None)
    if start is None:
        return [(states[0], float(sum(durations)))]
    runs: list[tuple[str, float]] = []
    for k in range(n):
        j = (start + k) % n
        if runs and runs[-1][0] == states[j]:
            runs[-1] = (states[j], runs[-1][1] + durations[j])
        else:
            runs.append((states[j], durations[j]))
    return runs


def _plan(states: list[tuple[str, float, float, float]], candidates: list[str], crossing: np.ndarray
          ) -> tuple[list[tuple[int, float, float, float, float]], dict[tuple[int, int], list[tuple[str, float]]]]:
    """The program's cycle as plan steps (phase, end_s, green_s, min_s, max_s: see
    `Network.plan_*`) and, per pair of successive steps, the program's own phases
    between them, where they clear every vehicle link that loses its green
    through a yellow (else that transition gets our yellow and all-red)."""
    n = len(states)
    index = {state: i for i, state in enumerate(candidates)}
    cycle_s = sum(phase[1] for phase in states)
    starts = np.concatenate(([0.0], np.cumsum([phase[1] for phase in states])))
    first = next((j for j in range(n) if states[j][0] in index and states[j - 1][0] != states[j][0]), None)
    if first is None:   # one green all along, or greens only in interims
        first = next((j for j in range(n) if states[j][0] in index), 0)
    segments: list[tuple[int, list[int]]] = []   # (phase or -1 for an interim, program phase indices)
    for k in range(n):
        j = (first + k) % n
        phase = index.get(states[j][0], -1)
        if segments and segments[-1][0] == phase:
            segments[-1][1].append(j)
        else:
            segments.append((phase, [j]))
    if len(segments) > 1 and segments[-1][0] == segments[0][0] >= 0:
        segments[0] = (segments[0][0], segments.pop()[1] + segments[0][1])
    greens = [k for k, (phase, _) in enumerate(segments) if phase >= 0]
    steps, interims = [], {}
    for position, k in enumerate(greens):
        phase, members = segments[k]
        green_s = sum(states[j][1] for j in members)

        def bound(column: int) -> float:
            if all(states[j][column] < 0 for j in members):
                return -1.0
            return sum(states[j][column] if states[j][column] >= 0 else states[j][1] for j in members)

        steps.append((phase, float((starts[members[0]] + green_s) % cycle_s), green_s, bound(2), bound(3)))
        following = greens[(position + 1) % len(greens)]
        between = segments[k + 1:following] if following > k else segments[k + 1:] + segments[:following]
        target = segments[following][0]
        sequence = [(states[j][0], states[j][1]) for _, members_between in between for j in members_between]
        if target != phase and (phase, target) not in interims and sequence and _clears_safely(
                [candidates[phase]] + [state for state, _ in sequence] + [candidates[target]], crossing):
            interims[phase, target] = sequence
    return steps, interims


def _clears_safely(sequence: list[str], crossing: np.ndarray) -> bool:
    """Whether every vehicle link that leaves green along `sequence` shows yellow first."""
    for before, after in zip(sequence, sequence[1:]):
        for link, (was, now) in enumerate(zip(before, after)):
            if not crossing[link] and was in "Gg" and now not in "GgyoO":
                return False
    return True


def _repair_conflicts(states: list[tuple[str, float, float, float]], conflict: np.ndarray, yields: np.ndarray
                      ) -> tuple[list[tuple[str, float, float, float]], list[str]]:
    """The program with no two foes both protected ('G'): of such a pair, the link
    that yields to the other at its junction (SUMO's <request response>) shows
    permissive 'g' (both, where neither yields). Returns the phases and one line per
    phase that changed."""
    repaired, lines = [], []
    for number, (state, *rest) in enumerate(states):
        protected = np.array([ch == "G" for ch in state])
        pairs = np.argwhere(np.triu(conflict & np.outer(protected, protected)))
        demote = set()
        for a, b in pairs.tolist():
            if yields[a, b] and not yields[b, a]:
                demote.add(a)
            elif yields[b, a] and not yields[a, b]:
                demote.add(b)
            else:
                demote.update((a, b))
        if demote:
            chars = list(state)
            for link in demote:
                chars[link] = "g"
            lines.append(f"phase {number}: links {', '.join(map(str, sorted(demote)))} G -> g "
                         f"(protected green beside a foe)")
            state = "".join(chars)
        repaired.append((state, *rest))
    return repaired, lines


def _link_yellow_s(states: list[tuple[str, float, float, float]], n_links: int, default_s: float) -> np.ndarray:
    """Per link, the shortest run of yellow the program shows it (default_s if none)."""
    return _shortest_run(states, n_links, "y", default_s)


def _shortest_run(states: list[tuple[str, float, float, float]], n_links: int, chars: str,
                  default_s: float) -> np.ndarray:
    """Per link, the shortest run of phases showing it one of `chars` (default_s if none)."""
    out = np.full(n_links, default_s)
    durations = [phase[1] for phase in states]
    for link in range(n_links):
        marks = ["on" if phase[0][link] in chars else "-" for phase in states]
        runs = [run_s for mark, run_s in _runs(marks, durations) if mark == "on"]
        if runs and len(set(marks)) > 1:
            out[link] = min(runs)
    return out


def _clearance(states: list[tuple[str, float, float, float]], kind: str) -> float:
    """Yellow (or all-red) time of a signal: the longest such interval in its own
    program (a run of phases, as programs often split one), so the engine never
    shortens what the program prescribes."""
    durations = [phase[1] for phase in states]
    if kind == "yellow":
        runs = [run_s for link in range(len(states[0][0]))
                for mark, run_s in _runs(["y" if phase[0][link] == "y" else "-" for phase in states], durations)
                if mark == "y"]
        return max(runs) if runs else _DEFAULT_YELLOW_S
    marks = ["red" if not any(ch in "GgyYu" for ch in phase[0]) else "-" for phase in states]
    runs = [run_s for mark, run_s in _runs(marks, durations) if mark == "red"]
    return max(runs) if runs and len(set(marks)) > 1 else 0.0


def _pedestrian_clearance(states: list[tuple[str, float, float, float]], crossing: np.ndarray) -> float:
    """Seconds the program shows its crossings red while the vehicle greens go on,
    before their yellow (netconvert's default: 5 s): the time a pedestrian who stepped
    out at the end of the walk has to clear the crossing before the vehicles' clearance
    begins. The longest such interval; 0 where there is none. `crossing`: per link,
    whether no vehicle connection goes through it."""
    n = len(states)
    crossing_links = np.flatnonzero(crossing).tolist()
    vehicle = np.flatnonzero(~crossing).tolist()
    longest = 0.0
    for i, (state, _, _, _) in enumerate(states):
        before = states[i - 1][0]
        if "y" in state or not any(before[k] in "Gg" and state[k] not in "Gg" for k in crossing_links):
            continue
        held, j = 0.0, i
        while j < i + n and "y" not in states[j % n][0]:
            if any(states[j % n][0][k] != before[k] for k in vehicle):
                held = 0.0   # the vehicle phase changed: not a clearance before its yellow
                break
            held += states[j % n][1]
            j += 1
        longest = max(longest, held)
    return longest


def _walk_gap(states: list[tuple[str, float, float, float]], crossing: np.ndarray) -> float:
    """The shortest time from a crossing's walk ending to a vehicle link turning green
    in the program's cycle (inf if that never happens)."""
    shortest, since = np.inf, np.inf
    n = len(states)
    for k in range(2 * n):   # twice round, so changes across the cycle's end count
        before, now = states[(k - 1) % n][0], states[k % n][0]
        if any(crossing[link] and before[link] in "Gg" and now[link] not in "Gg" for link in range(len(now))):
            since = 0.0
        if k >= n and any(not crossing[link] and before[link] not in "Gg" and now[link] in "Gg"
                          for link in range(len(now))):
            shortest = min(shortest, since)
        since += states[k % n][1]
    return shortest


def _conflicts(tls, connections, n_links: int) -> np.ndarray:
    """Links from different roads whose paths cross or merge (SUMO's `foes` bits)."""
    return _junction_bits(tls, connections, n_links, "_foes", symmetric=True)


def _yields(tls, connections, n_links: int) -> np.ndarray:
    """[a, b]: link a must let link b go first at their junction (SUMO's `response` bits)."""
    return _junction_bits(tls, connections, n_links, "_prohibits", symmetric=False)


def _junction_bits(tls, connections, n_links: int, table: str, symmetric: bool) -> np.ndarray:
    matrix = np.zeros((n_links, n_links), dtype=bool)
    by_node: dict = {}
    for in_lane, out_lane, link in connections:
        node = in_lane.getEdge().getToNode()
        conn = _find_connection(in_lane, out_lane)
        if conn is None:
            continue
        request = node.getLinkIndex(conn)
        if request >= 0:
            by_node.setdefault(node, []).append((link, request, in_lane.getEdge().getID()))
    for node, entries in by_node.items():
        for link_a, req_a, road_a in entries:
            for link_b, req_b, road_b in entries:
                # Lanes of one road merging downstream (a lane drop) are foes in SUMO but
                # zip by its merge rules; nets run them green together, so they are not
                # a crossing conflict.
                bits = getattr(node, table)
                if road_a == road_b or link_a == link_b or req_a not in bits:
                    continue
                if _bit(bits[req_a], req_b):
                    matrix[link_a, link_b] = True
                    if symmetric:
                        matrix[link_b, link_a] = True
    return matrix


def _bit(bits: str, index: int) -> bool:
    """SUMO writes request bit strings with index 0 as the rightmost character."""
    return 0 <= index < len(bits) and bits[len(bits) - 1 - index] == "1"


def _find_connection(in_lane, out_lane):
    for conn in in_lane.getOutgoing():
        if conn.getToLane() is out_lane:
            return conn
    return None


def _zone(lane, direction: str, range_m: float) -> list[tuple[object, float, float, int]]:
    """The lane plus neighbours through unsignalised nodes, up to range_m: each
    member with its share, its distance from the lane (`Network.zone_offset_m`)
    and the position in this list of the member it was reached from (-1: none).

    A vehicle on an upstream lane that feeds k lanes is shared equally among
    them, so zone totals never count a vehicle twice across a signal's lanes."""
    members = [(lane, 1.0, 0.0, -1)]
    frontier = [(0, lane.getLength())]
    seen = {lane.getID()}
    upstream = direction == "upstream"
    while frontier:
        position, covered = frontier.pop()
        current, weight = members[position][:2]
        if covered >= range_m:
            continue
        node = current.getEdge().getFromNode() if upstream else current.getEdge().getToNode()
        if node.getType() == "traffic_light":
            continue
        neighbours = current.getIncoming() if upstream else current.getOutgoingLanes()
        for other in neighbours:
            if other.getID() in seen or other.getEdge().getFunction() == "internal":
                continue
            fan = {x.getID() for x in (other.getOutgoingLanes() if upstream else other.getIncoming())}
            seen.add(other.getID())
            members.append((other, weight / max(1, len(fan)), covered, position))
            frontier.append((len(members) - 1, covered + other.getLength()))
    return members


def _routing_graph(edges, edge_index: dict[str, int]) -> nx.DiGraph:
    """Edges as nodes; u -> v where emergency vehicles may turn from u into v."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(edges)))
    for edge in edges:
        u = edge_index[edge.getID()]
        for target, connections in edge.getOutgoing().items():
            v = edge_index.get(target.getID())
            usable = [c for c in connections if c.getFromLane().allows(_EMERGENCY) and c.getToLane().allows(_EMERGENCY)]
            if v is None or not usable:
                continue
            graph.add_edge(u, v, travel_time_s=target.getLength() / max(target.getSpeed(), 0.1),
                           turnaround=all(c.getDirection() == "t" for c in usable))
    return graph


_EMERGENCY = "emergency"
