"""Detector mode: what a controller sees when a city has loops, not perfect counts.

A *loop layout* places SUMO E1 induction loops the way signal engineers do:

- a **stop-line loop** on every approach lane, just before the stop line, so a
  vehicle waiting at the line stands on it;
- **advance loops** upstream, where a vehicle at the speed limit is
  `advance_travel_s` from the line; on a short turn-bay lane they go on the
  lanes feeding it (each carrying its share, as in the net's detection zones),
  and an approach that starts sooner (at an upstream signal or the network's
  edge) gets its loop at that start.

`LoopEstimator` turns what loops report each control period (vehicles that
passed, share of time occupied) back into the per-lane `DetectorFrame` the
controllers read, by input-output counting (Sharma, Bullock and Bonneson,
"Input-output and hybrid techniques for real-time prediction of delay and
maximum queue length at signalized intersections", TRR 2035, 2007): vehicles
between the loops = vehicles in - vehicles out, bounded by the space there is,
full when a vehicle stands on the advance loop, empty when nothing has entered
or stood at the line for a whole free-flow crossing. Lanes without loops read 0.

No I/O here: the SUMO adapter writes the loops into SUMO and reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import kernels as compiled_kernels
from .frame import DetectorFrame
from .network import Network

__all__ = ["DETECTOR_MODES", "DetectorConfig", "LoopLayout", "LoopEstimator", "standard_layout"]

# "lanes": every lane's exact counts (perfect detection); "loops": a standard
# stop-line plus advance loop layout generated for the net.
DETECTOR_MODES = ("lanes", "loops")


@dataclass(frozen=True)
class DetectorConfig:
    """Where loops go and how their readings are interpreted: one default for every network."""

    # A loop this far before the stop line is under a vehicle waiting at the line
    # (SUMO stops vehicles up to a metre short of it; a car is 5 m long).
    stop_line_setback_m: float = 3.0
    # Advance loops sit where a vehicle at the lane's speed limit is this many
    # seconds from the stop line (a common advance-detector rule).
    advance_travel_s: float = 5.0
    min_advance_m: float = 15.0
    # A loop occupied for this share of a period has a vehicle standing on it.
    standing_occupancy: float = 0.95
    # Road length one queued vehicle takes (SUMO's default car: 5 m plus 2.5 m gap).
    jam_spacing_m: float = 7.5
    # A lane with nothing entering and nothing at its stop line for the free-flow
    # crossing time plus this long is empty (clears counting drift).
    empty_after_extra_s: float = 2.0


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


def standard_layout(network: Network, config: DetectorConfig = DetectorConfig()) -> LoopLayout:
    """Stop-line and advance loops for every approach lane of every signal of `network`."""
    loops: dict[tuple[int, float], int] = {}

    def loop_at(lane: int, position_m: float) -> int:
        key = (lane, round(position_m, 1))
        return loops.setdefault(key, len(loops))

    lanes = np.unique(network.move_in_lane)
    stop, advance = _Csr(), _Csr()
    capacity, crossing = [], []
    for lane in lanes:
        speed = max(float(network.lane_speed_mps[lane]), 1.0)
        advance_m = max(config.min_advance_m, config.advance_travel_s * speed)
        for distance_m, csr in ((config.stop_line_setback_m, stop), (advance_m, advance)):
            for member, position, share in _on_approach(network, lane, distance_m):
                csr.add(loop_at(member, position), share)
            csr.close()
        covered_m = _approach_length(network, lane, advance_m) - _approach_length(network, lane,
                                                                                  config.stop_line_setback_m)
        capacity.append(max(1.0, covered_m / config.jam_spacing_m))
        crossing.append(covered_m / speed)

    keys = list(loops)
    return LoopLayout(
        loop_ids=tuple(f"citybrain_{network.lane_ids[lane]}_{position:g}" for lane, position in keys),
        loop_lane=np.array([lane for lane, _ in keys], dtype=np.int32),
        loop_position_m=np.array([position for _, position in keys], dtype=np.float64),
        lane=lanes.astype(np.int32),
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
    whether the approach goes on upstream of it) over the lane's detection zone."""
    first, last = int(network.zone_ptr[lane]), int(network.zone_ptr[lane + 1])
    fed = np.zeros(last - first, dtype=bool)
    for k in range(first, last):
        parent = int(network.zone_parent[k])
        if parent >= 0:
            fed[parent - first] = True
    for k in range(first, last):
        member = int(network.zone_lane[k])
        yield (member, float(network.zone_offset_m[k]), float(network.lane_length_m[member]),
               float(network.zone_weight[k]), bool(fed[k - first]))


def _on_approach(network: Network, lane: int, distance_m: float):
    """Where the approach to `lane` is `distance_m` from its stop line: (lane, position
    from that lane's start, share) on each branch; a branch that starts sooner (at a
    signal, or the network's edge) gets its place at its start."""
    for member, offset, length, share, fed in _zone_members(network, lane):
        if offset <= distance_m < offset + length:
            yield member, length - (distance_m - offset), share
        elif offset + length <= distance_m and not fed:
            yield member, min(1.0, length / 2), share


def _approach_length(network: Network, lane: int, distance_m: float) -> float:
    """Lane length (weighted by share) of the approach within distance_m of the stop line,
    up to where _on_approach places a loop at that distance."""
    total = 0.0
    for _, offset, length, share, fed in _zone_members(network, lane):
        if offset + length <= distance_m and not fed:
            total += share * (length - min(1.0, length / 2))
        else:
            total += share * max(0.0, min(length, distance_m - offset))
    return total


class LoopEstimator:
    """Per-lane vehicles, halted vehicles and occupancy from loop readings.

    Stateful (queues carried between periods); feed it every period in order."""

    def __init__(self, network: Network, layout: LoopLayout, config: DetectorConfig = DetectorConfig(),
                 kernels: ModuleType = compiled_kernels):
        self.network = network
        self.layout = layout
        self.config = config
        self.kernels = kernels
        n = len(layout.lane)
        self.queue_veh = np.zeros(n)
        self.in_transit_veh = np.zeros(n)
        self.quiet_s = np.zeros(n)
        self.last_time_s: float | None = None

    def frame(self, time_s: float, passed_veh: np.ndarray, occupied: np.ndarray, emergency=()) -> DetectorFrame:
        """`passed_veh[j]`: vehicles over loop j in the period just ended; `occupied[j]`:
        share of that period loop j was occupied (0..1)."""
        n_lanes = self.network.n_lanes
        vehicles, halting, occupancy = np.zeros(n_lanes), np.zeros(n_lanes), np.zeros(n_lanes)
        elapsed_s = 0.0 if self.last_time_s is None else time_s - self.last_time_s
        self.last_time_s = time_s
        layout, config = self.layout, self.config
        self.kernels.estimate_loop_queues(
            passed_veh, occupied, elapsed_s, layout.lane, layout.stop_ptr, layout.stop_loop, layout.stop_share,
            layout.advance_ptr,
            layout.advance_loop, layout.advance_share, layout.capacity_veh, layout.crossing_s,
            config.standing_occupancy, config.empty_after_extra_s,
            self.queue_veh, self.in_transit_veh, self.quiet_s, vehicles, halting, occupancy)
        return DetectorFrame(time_s, vehicles, halting, occupancy, emergency)
