"""Configuration: frozen dataclasses, units in the names."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SignalTiming", "ControllerConfig", "PreemptionConfig", "SupervisorConfig", "DetectorConfig",
           "JAM_SPACING_M", "SATURATION_VEH_PER_S"]

# Road length one standing vehicle takes (SUMO's default car: 5 m plus 2.5 m gap).
JAM_SPACING_M = 7.5
# Saturation flow per lane: 1,800 veh/h, one vehicle every 2 s (HCM's base is 1,900 pc/h).
SATURATION_VEH_PER_S = 0.5


@dataclass(frozen=True)
class SignalTiming:
    """Timing rules the safety layer enforces on every signal.

    Yellow and all-red come from each signal's own program in the net and are
    never shortened; these are the rules the net does not state."""

    min_green_s: float = 5.0
    # A signal's minimum green is also at least this multiple of its clearance
    # (yellow + all-red), so switching never spends more than a third of a short
    # cycle in clearance. With 5 s yellows (cologne1) that is 10 s.
    min_green_per_clearance: float = 2.0
    control_period_s: float = 1.0
    # The one rule emergency preemption may bend: a green that conflicts with an
    # approaching emergency vehicle may end after this long instead of its
    # minimum green (NTCIP 1202 "preempt minimum green"). Clearance is never cut.
    preemption_min_green_s: float = 2.0
    # All-red where a signal's program has less (none, in every net here). The
    # default 0 keeps the net's own; a site with real intergreens puts them in
    # its net. docs/controller.md (Emergency braking) measures 1 s and 2 s.
    min_all_red_s: float = 0.0

    def min_green_of(self, clearance_s):
        """Per-signal minimum green for an array of clearance times."""
        return np.maximum(self.min_green_s, self.min_green_per_clearance * clearance_s)


@dataclass(frozen=True)
class ControllerConfig:
    """Parameters of the adaptive controllers: one default for every network."""

    # maxpressure: past this the current phase is not kept.
    max_green_s: float = 60.0
    # citybrain: past this the current phase is not kept while another phase has a
    # halted vehicle to serve (a conflicting call); with none, the green rests.
    called_max_green_s: float = 30.0
    # citybrain's rolling horizon (controllers.CityBrainController): the schedule it
    # compares covers two of its max greens.
    horizon_s: float = 60.0
    saturation_veh_per_s: float = SATURATION_VEH_PER_S
    # A lane whose links are only permissive ('g') in a phase discharges through gaps in
    # the opposing flow: this share of saturation flow (HCM's permissive adjustment is
    # about a half at moderate opposing flow).
    permissive_share: float = 0.5
    # A lane shared by several turns, in a phase that holds one of them at red, flows only
    # until a vehicle bound for that turn reaches its head. With two turns equally used,
    # one vehicle goes first on average (p / (1 - p) at p = 1/2): this share of saturation
    # flow gives about one vehicle in a 7 s minimum green. Such a lane does not hold the
    # phase green in the schedule where another phase greens all its turns.
    split_lane_share: float = 0.3
    # Start-up lost time of a newly green queue (HCM), added to each switch's yellow and all-red.
    start_up_lost_s: float = 2.0
    # A lane's mean arrival rate, used past what its detection zone shows, follows
    # the zone's current flow with this memory.
    rate_memory_s: float = 60.0
    # A vehicle sent into a standing queue waits at least that queue's discharge time
    # at saturation flow; the cost counts that much. A weight of 4 (a movement green a
    # quarter of the time) starved lanes feeding queues (docs/controller.md, session 10).
    downstream_weight: float = 1.0
    # A lane is full when its halted vehicles fill this share of its length at jam
    # spacing (queued cars stop short of the lane's ends).
    exit_full_share: float = 0.85
    jam_spacing_m: float = JAM_SPACING_M
    # A green lane whose queue has not shrunk for this long has a blocked head
    # vehicle: three saturation headways (~2 s each) without one departure.
    blocked_after_s: float = 6.0
    # A lane whose queue has stood this long (not once shrunk or emptied) gets the phase
    # that protects it, whatever the schedule says: two max greens. The schedule alone can
    # starve a turn that waits behind a gap that never comes (arterial4x4).
    max_stall_s: float = 120.0
    # "free": any candidate phase may follow any other. "program": where the program's
    # changes carry an all-red (Network.keeps_order), its cyclic order, skipping greens
    # nobody calls, each green within the program's own minDur/maxDur. Free is the
    # default: on Berlin's programs with all-reds (seeds 42-44, exact counts), the
    # program's order measured 55.3 s of all-vehicle delay against 47.7 s free, and the
    # city's own 54.8 s (docs/controller.md, Real-city programs).
    phase_order: str = "free"


@dataclass(frozen=True)
class PreemptionConfig:
    """Emergency-vehicle preemption: one default for every network."""

    enabled: bool = True
    # A standing queue ahead of the vehicle must discharge before it arrives:
    # start-up lost time plus one saturation headway per queued vehicle.
    queue_start_s: float = 2.0
    queue_headway_s: float = 2.0
    # The vehicle's green is planned to be up this long before its estimated arrival.
    margin_s: float = 3.0
    # Signals further ahead than this (free-flow time) are not planned yet.
    horizon_s: float = 120.0
    # A signal held for one vehicle longer than this is released (NTCIP max presence).
    max_presence_s: float = 60.0
    # A green held for a vehicle that has not moved for this long, while the queue
    # ahead of it has not moved either (a blocked head, or a full exit), is handed
    # back to adaptive control for stall_release_s: three saturation headways,
    # as ControllerConfig.blocked_after_s.
    stall_after_s: float = 6.0
    stall_release_s: float = 30.0
    # A vehicle not reported for this long is forgotten.
    drop_after_s: float = 5.0


@dataclass(frozen=True)
class SupervisorConfig:
    """Do no harm (citybrain.supervisor): when adaptive control hands a signal back
    to its city's plan. One default for every network."""

    enabled: bool = True
    # What an approach lane got, and its queue, are judged over this memory: five
    # minutes, a few cycles of any city's program.
    window_s: float = 300.0
    # Its recent queue (one minute) against that: rising by more than this many vehicles.
    fast_s: float = 60.0
    rising_veh: float = 2.0
    # Starved: less than this share of the green the plan gives it. Adaptive control
    # moves green between approaches by design; only a lane cut to under half its
    # plan green is judged (at 95% of it, three handovers on arterial4x4, an
    # oversaturated arterial, cost 51 s of all-vehicle delay on seed 42).
    green_ratio: float = 0.5
    # Harm must last this long without a break (two minutes: beyond one cycle's swing).
    harm_after_s: float = 120.0
    # A handed-back signal runs its plan this long, doubled at each repeat up to max_hold_s.
    hold_s: float = 600.0
    max_hold_s: float = 3600.0


@dataclass(frozen=True)
class DetectorConfig:
    """Detector mode (citybrain.detectors): where loops go and how their readings are
    interpreted. One default for every network."""

    # A loop this far before the stop line is under a vehicle waiting at the line
    # (SUMO stops vehicles up to a metre short of it; a car is 5 m long).
    stop_line_setback_m: float = 3.0
    # Advance loops sit where a vehicle at the lane's speed limit is this many
    # seconds from the stop line (a common advance-detector rule).
    advance_travel_s: float = 5.0
    min_advance_m: float = 15.0
    # A scenario's own loop this close to the stop line counts as its stop-line loop;
    # further upstream, as an advance loop.
    stop_line_zone_m: float = 10.0
    # A loop occupied for this share of a period has a vehicle standing on it.
    standing_occupancy: float = 0.95
    jam_spacing_m: float = JAM_SPACING_M
    # A lane with nothing entering and nothing at its stop line for the free-flow
    # crossing time plus this long is empty (clears counting drift).
    empty_after_extra_s: float = 2.0
    # A lane seen only by loops upstream: its queue leaves at saturation flow while green.
    saturation_veh_per_s: float = SATURATION_VEH_PER_S
