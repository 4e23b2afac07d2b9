"""Detector mode: what a controller sees when a city has loops, not perfect counts.

A *loop layout* places SUMO E1 induction loops the way signal engineers do:

- a **stop-line loop** on every approach lane, just before the stop line, so a
  vehicle waiting at the line stands on it;
- **advance loops** upstream, where a vehicle at the speed limit is
  `advance_travel_s` from the line; on a short turn-bay lane they go on the
  lanes feeding it (each carrying its share, as in the net's detection zones),
  and an approach that starts sooner (at an upstream signal or the network's
  edge) gets its loop at that start.

`layout_from_loops` reads the same structure out of loops placed by someone
else (`scenario_layout`: the scenario's own `<inductionLoop>`s).

`LoopEstimator` turns what loops report each control period (vehicles that
passed, share of time occupied) back into the per-lane `DetectorFrame` the
controllers read, by input-output counting (Sharma, Bullock and Bonneson,
"Input-output and hybrid techniques for real-time prediction of delay and
maximum queue length at signalized intersections", TRR 2035, 2007): vehicles
between the loops = vehicles in - vehicles out, bounded by the space there is,
full when a vehicle stands on the advance loop, empty when nothing has entered
or stood at the line for a whole free-flow crossing. Of those, the ones that came
in more than a free-flow crossing ago are reported as halted: they are queued
(standing or creeping). Lanes without loops read 0.

No I/O here: the SUMO adapter writes the loops into SUMO and reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import kernels as compiled_kernels
from .config import DetectorConfig
from .frame import DetectorFrame
from .network import Network
from .scenario import InductionLoop

__all__ = ["DETECTOR_MODES", "LoopLayout", "LoopEstimator", "standard_layout", "sparse_layout",
           "layout_from_loops", "scenario_layout"]

# "lanes": every lane's exact counts (perfect detection); "loops": a standard
# stop-line plus advance loop layout generated for the net; "scenario": the
# induction loops and lane-area detectors the scenario itself defines; "auto":
# "scenario" where it defines some on lanes the signals see, else "lanes".
DETECTOR_MODES = ("auto", "lanes", "loops", "scenario", "sparse")
DEFAULT_CONFIG = DetectorConfig()


@dataclass(frozen=True)
class LoopLayout:
    """Loops in network indices, and which loops bound each detected lane's segment."""

    loop_ids: tuple[str, ...]
    loop_lane: np.ndarray          # int32 [loops]: index into Network.lane_ids
    loop_position_m: np.ndarray    # float64 [loops]: from the start of that lane
    # Detected lanes (every approach lane of a signal), each with, CSR by stop_ptr
    # and advance_ptr, its stop-line and advance loops and the share of each loop's
    # vehicles that are this lane's. A stop-line loop is on the lane itself unless
    # the lane is too short for one (vehicles then wait on the lanes feeding it).
    lane: np.ndarray               # int32 [detected]
    stop_ptr: np.ndarray           # int32 [detected + 1]
    stop_loop: np.ndarray          # int32
    stop_share: np.ndarray         # float64
    advance_ptr: np.ndarray        # int32 [detected + 1]
    advance_loop: np.ndarray       # int32
    advance_share: np.ndarray      # float64
    capacity_veh: np.ndarray       # float64 [detected]: vehicles that fit between the loops
    crossing_s: np.ndarray         # float64 [detected]: free-flow time from advance loop to stop line

    @property
    def n_loops(self) -> int:
        return len(self.loop_ids)

    @property
    def upstream_only(self) -> np.ndarray:
        """The detected lanes with no stop-line loop: seen only upstream, their departures modelled."""
        return self.lane[np.diff(self.stop_ptr) == 0]


def standard_layout(network: Network, config: DetectorConfig = DEFAULT_CONFIG) -> LoopLayout:
    """Stop-line and advance loops for every approach lane of every signal of `network`."""
    loops = _Loops()
    lanes = np.unique(network.move_in_lane)
    stop, advance = _Csr(), _Csr()
    capacity, crossing = [], []
    for lane in lanes:
        advance_m = max(config.min_advance_m, config.advance_travel_s * _free_speed(network, lane))
        for distance_m, csr in ((config.stop_line_setback_m, stop), (advance_m, advance)):
            for member, position, share in _on_approach(network, lane, distance_m):
                csr.add(loops.at(member, position), share)
            csr.close()
        _add_segment(network, lane, config.stop_line_setback_m, advance_m, config, capacity, crossing)
    return _layout(network, loops, list(lanes), stop, advance, capacity, crossing)


def layout_from_loops(network: Network, loops: list[tuple[int, float]],
                      config: DetectorConfig = DEFAULT_CONFIG) -> LoopLayout:
    """A layout from loops someone else placed: (lane index, position from the lane's
    start). On each approach, the loops within `stop_line_zone_m` of the stop line
    nearest to it are its stop-line loops, and the most upstream loop of each branch
    beyond that its advance loops. An approach with advance loops only (real
    counting loops often lie 20-400 m upstream) counts what passes them, and its
    departures from what the signal shows (`estimate_loop_queues`). Approach lanes
    without any loop get no estimate: they are not observed."""
    positions: dict[int, list[float]] = {}
    for lane, position in loops:
        positions.setdefault(lane, []).append(position)
    placed = _Loops()
    detected, capacity, crossing = [], [], []
    stop, advance = _Csr(), _Csr()
    for lane in np.unique(network.move_in_lane):
        members = list(_zone_members(network, lane))
        near: dict[int, tuple[float, float]] = {}     # member -> (position, distance) of its loop nearest the line
        far: dict[int, tuple[float, float]] = {}      # member -> its most upstream loop beyond the stop-line zone
        for j, (member, offset, length, _, _, _) in enumerate(members):
            for position in positions.get(member, ()):
                distance = offset + length - position
                if distance <= config.stop_line_zone_m:
                    if j not in near or distance < near[j][1]:
                        near[j] = (position, distance)
                elif j not in far or distance > far[j][1]:
                    far[j] = (position, distance)
        # Stop-line loops nearest the line on each branch; advance loops furthest out on each.
        near = {j: v for j, v in near.items() if not any(a in near for a in _ancestors(members, j))}
        covered = {a for j in far for a in _ancestors(members, j)}
        far = {j: v for j, v in far.items() if j not in covered}
        if not near and not far:
            continue
        for chosen, csr in ((near, stop), (far, advance)):
            for j, (position, _) in chosen.items():
                csr.add(placed.at(members[j][0], position), members[j][3])
            csr.close()
        stop_m = min((distance for _, distance in near.values()), default=0.0)
        advance_m = max((distance for _, distance in far.values()), default=stop_m)
        detected.append(lane)
        _add_segment(network, lane, stop_m, advance_m, config, capacity, crossing)
    return _layout(network, placed, detected, stop, advance, capacity, crossing)


def sparse_layout(network: Network, seed: int, coverage: tuple[float, float] = (0.3, 1.0),
                  max_upstream_m: float = 300.0, config: DetectorConfig = DEFAULT_CONFIG) -> LoopLayout:
    """A random sparse layout of counting loops, as real cities have them: a share of
    the approach lanes (drawn from `coverage`) gets one loop each, 0 to
    `max_upstream_m` upstream of its stop line (on the lane, or on one of the lanes
    feeding it), and the others none. The same seed gives the same layout."""
    rng = np.random.default_rng(seed)
    lanes = np.unique(network.move_in_lane)
    share = rng.uniform(*coverage)
    chosen = rng.choice(lanes, max(1, int(round(share * lanes.size))), replace=False)
    placed = []
    for lane in np.sort(chosen).tolist():
        places = list(_on_approach(network, lane, float(rng.uniform(0.0, max_upstream_m))))
        if places:
            member, position, _ = places[int(rng.integers(len(places)))]
            # SUMO takes a loop only on its lane, not at its very end.
            placed.append((member, min(max(position, 0.0), max(float(network.lane_length_m[member]) - 0.1, 0.0))))
    return layout_from_loops(network, placed, config)


def scenario_layout(network: Network, loops: tuple[InductionLoop, ...],
                    config: DetectorConfig = DEFAULT_CONFIG) -> LoopLayout | None:
    """The layout of a scenario's own induction loops, or None when none of them
    serves an approach lane of a signal. Loops on lanes the net's signals do not
    see are ignored."""
    placed = []
    for loop in loops:
        lane = network.lane_index.get(loop.lane)
        if lane is not None:
            length = float(network.lane_length_m[lane])
            # Real loops can lie a little past their lane's end; SUMO takes a loop only on the lane.
            placed.append((lane, min(max(loop.position_m + length if loop.position_m < 0 else loop.position_m,
                                         0.0), max(length - 0.1, 0.0))))
    layout = layout_from_loops(network, placed, config)
    return layout if len(layout.lane) else None


def _free_speed(network: Network, lane: int) -> float:
    return max(float(network.lane_speed_mps[lane]), 1.0)


def _add_segment(network: Network, lane: int, stop_m: float, advance_m: float, config: DetectorConfig,
                 capacity: list[float], crossing: list[float]) -> None:
    """The vehicles that fit between a lane's stop-line and advance loops, and the
    free-flow time from one to the other."""
    covered_m = _approach_length(network, lane, advance_m) - _approach_length(network, lane, stop_m)
    capacity.append(max(1.0, covered_m / config.jam_spacing_m))
    crossing.append(covered_m / _free_speed(network, lane))


def _ancestors(members: list, j: int):
    """Local indices of the members downstream of member j, towards the approach lane."""
    parent = members[j][5]
    while parent >= 0:
        yield parent
        parent = members[parent][5]


class _Loops:
    """Loops by place (lane, position to the decimetre), numbered as first placed."""

    def __init__(self):
        self.index: dict[tuple[int, float], int] = {}

    def at(self, lane: int, position_m: float) -> int:
        return self.index.setdefault((lane, round(position_m, 1)), len(self.index))


def _layout(network: Network, loops: _Loops, detected: list[int], stop: "_Csr", advance: "_Csr",
            capacity: list[float], crossing: list[float]) -> LoopLayout:
    keys = list(loops.index)
    return LoopLayout(
        loop_ids=tuple(f"citybrain_{network.lane_ids[lane]}_{position:g}" for lane, position in keys),
        loop_lane=np.array([lane for lane, _ in keys], dtype=np.int32),
        loop_position_m=np.array([position for _, position in keys], dtype=np.float64),
        lane=np.array(detected, dtype=np.int32),
        stop_ptr=stop.pointers(), stop_loop=stop.loops(), stop_share=stop.shares(),
        advance_ptr=advance.pointers(), advance_loop=advance.loops(), advance_share=advance.shares(),
        capacity_veh=np.array(capacity, dtype=np.float64),
        crossing_s=np.array(crossing, dtype=np.float64),
    )


class _Csr:
    def __init__(self):
        self.ptr, self.loop, self.share = [0], [], []

    def add(self, loop: int, share: float) -> None:
        self.loop.append(loop)
        self.share.append(share)

    def close(self) -> None:
        self.ptr.append(len(self.loop))

    def pointers(self) -> np.ndarray:
        return np.array(self.ptr, dtype=np.int32)

    def loops(self) -> np.ndarray:
        return np.array(self.loop, dtype=np.int32)

    def shares(self) -> np.ndarray:
        return np.array(self.share, dtype=np.float64)


def _zone_members(network: Network, lane: int):
    """(member lane, distance from the stop line to its downstream end, length, share,
    whether the approach goes on upstream of it, the local index of the member
    downstream of it or -1) over the lane's detection zone."""
    first, last = int(network.zone_ptr[lane]), int(network.zone_ptr[lane + 1])
    fed = np.zeros(last - first, dtype=bool)
    for k in range(first, last):
        parent = int(network.zone_parent[k])
        if parent >= 0:
            fed[parent - first] = True
    for k in range(first, last):
        member = int(network.zone_lane[k])
        parent = int(network.zone_parent[k])
        yield (member, float(network.zone_offset_m[k]), float(network.lane_length_m[member]),
               float(network.zone_weight[k]), bool(fed[k - first]), parent - first if parent >= 0 else -1)


def _on_approach(network: Network, lane: int, distance_m: float):
    """Where the approach to `lane` is `distance_m` from its stop line: (lane, position
    from that lane's start, share) on each branch; a branch that starts sooner (at a
    signal, or the network's edge) gets its place at its start."""
    for member, offset, length, share, fed, _ in _zone_members(network, lane):
        if offset <= distance_m < offset + length:
            yield member, length - (distance_m - offset), share
        elif offset + length <= distance_m and not fed:
            yield member, min(1.0, length / 2), share


def _approach_length(network: Network, lane: int, distance_m: float) -> float:
    """Lane length (weighted by share) of the approach within distance_m of the stop line,
    up to where _on_approach places a loop at that distance."""
    total = 0.0
    for _, offset, length, share, fed, _ in _zone_members(network, lane):
        if offset + length <= distance_m and not fed:
            total += share * (length - min(1.0, length / 2))
        else:
            total += share * max(0.0, min(length, distance_m - offset))
    return total


_GREEN_CODES = np.frombuffer(b"Gg", dtype=np.uint8)


class LoopEstimator:
    """Per-lane vehicles, halted vehicles and occupancy from loop readings.

    Stateful (queues carried between periods); feed it every period in order."""

    def __init__(self, network: Network, layout: LoopLayout, config: DetectorConfig = DEFAULT_CONFIG,
                 kernels: ModuleType = compiled_kernels):
        self.network = network
        self.layout = layout
        self.config = config
        self.kernels = kernels
        n = len(layout.lane)
        # Lanes seen only upstream count their departures from what their signal shows.
        self.needs_signal_states = layout.upstream_only.size > 0
        self.green_share = np.zeros(network.n_lanes)
        self._move_link = network.link_offset[network.move_signal] + network.move_link
        self.queue_veh = np.zeros(n)
        self.in_transit_veh = np.zeros(n)
        self.quiet_s = np.zeros(n)
        self.last_time_s: float | None = None

    def frame(self, time_s: float, passed_veh: np.ndarray, occupied: np.ndarray, emergency=(),
              signal_states: list[str] | None = None) -> DetectorFrame:
        """`passed_veh[j]`: vehicles over loop j in the period just ended; `occupied[j]`:
        share of that period loop j was occupied (0..1); `signal_states`: what each
        signal showed (SUMO state strings), needed where `needs_signal_states`."""
        if signal_states is not None:
            codes = np.frombuffer("".join(signal_states).encode("ascii"), dtype=np.uint8)
            green = np.isin(codes[self._move_link], _GREEN_CODES)
            self.green_share[:] = 0.0
            np.maximum.at(self.green_share, self.network.move_in_lane, green.astype(np.float64))
        n_lanes = self.network.n_lanes
        vehicles, halting, occupancy = np.zeros(n_lanes), np.zeros(n_lanes), np.zeros(n_lanes)
        elapsed_s = 0.0 if self.last_time_s is None else time_s - self.last_time_s
        self.last_time_s = time_s
        layout, config = self.layout, self.config
        self.kernels.estimate_loop_queues(
            passed_veh, occupied, elapsed_s, layout.lane, layout.stop_ptr, layout.stop_loop, layout.stop_share,
            layout.advance_ptr,
            layout.advance_loop, layout.advance_share, layout.capacity_veh, layout.crossing_s,
            config.standing_occupancy, config.empty_after_extra_s, self.green_share, config.saturation_veh_per_s,
            self.queue_veh, self.in_transit_veh, self.quiet_s, vehicles, halting, occupancy)
        return DetectorFrame(time_s, vehicles, halting, occupancy, emergency)
