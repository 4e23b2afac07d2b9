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
    # Detected lanes (every approach lane of a signal), each with one stop-line
    # loop and, CSR by advance_ptr, its advance loops and the share of each
    # loop's vehicles that enter this lane.
    lane: np.ndarray               # int32 [detected]
    stop_loop: np.ndarray          # int32 [detected]
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
    stop_loop, advance_ptr, advance_loop, advance_share, capacity, crossing = [], [0], [], [], [], []
    for lane in lanes:
        length = float(network.lane_length_m[lane])
        speed = max(float(network.lane_speed_mps[lane]), 1.0)
        stop_loop.append(loop_at(lane, max(0.0, length - config.stop_line_setback_m)))
        distance_m = max(config.min_advance_m, config.advance_travel_s * speed)
        first, last = int(network.zone_ptr[lane]), int(network.zone_ptr[lane + 1])
        has_upstream = np.zeros(last - first, dtype=bool)
        for k in range(first, last):
            parent = int(network.zone_parent[k])
            if parent >= 0:
                has_upstream[parent - first] = True
        covered_m = 0.0
        for k in range(first, last):
            member = int(network.zone_lane[k])
            offset, member_length = float(network.zone_offset_m[k]), float(network.lane_length_m[member])
            share = float(network.zone_weight[k])
            if offset <= distance_m < offset + member_length:
                position = member_length - (distance_m - offset)
            elif offset + member_length <= distance_m and not has_upstream[k - first]:
                position = min(1.0, member_length / 2)   # the approach starts here
            else:
                covered_m += share * max(0.0, min(member_length, distance_m - offset))
                continue
            covered_m += share * (member_length - position)
            advance_loop.append(loop_at(member, position))
            advance_share.append(share)
        advance_ptr.append(len(advance_loop))
        capacity.append(max(1.0, covered_m / config.jam_spacing_m))
        crossing.append(covered_m / speed)

    keys = list(loops)
    loop_lane = np.array([lane for lane, _ in keys], dtype=np.int32)
    return LoopLayout(
        loop_ids=tuple(f"citybrain_{network.lane_ids[lane]}_{position:g}" for lane, position in keys),
        loop_lane=loop_lane,
        loop_position_m=np.array([position for _, position in keys], dtype=np.float64),
        lane=lanes.astype(np.int32),
        stop_loop=np.array(stop_loop, dtype=np.int32),
        advance_ptr=np.array(advance_ptr, dtype=np.int32),
        advance_loop=np.array(advance_loop, dtype=np.int32),
        advance_share=np.array(advance_share, dtype=np.float64),
        capacity_veh=np.array(capacity, dtype=np.float64),
        crossing_s=np.array(crossing, dtype=np.float64),
    )


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
            passed_veh, occupied, elapsed_s, layout.lane, layout.stop_loop, layout.advance_ptr,
            layout.advance_loop, layout.advance_share, layout.capacity_veh, layout.crossing_s,
            config.standing_occupancy, config.empty_after_extra_s,
            self.queue_veh, self.in_transit_veh, self.quiet_s, vehicles, halting, occupancy)
        return DetectorFrame(time_s, vehicles, halting, occupancy, emergency)
