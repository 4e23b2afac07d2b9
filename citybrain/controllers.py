"""Controllers: detector frame in, requested phases out. No I/O here.

`fixed` and `actuated` are SUMO's own programs; they are not `Controller`s
because the simulator runs them itself (see `NATIVE_PROGRAMS`).
"""
from __future__ import annotations

from types import ModuleType
from typing import Protocol

import numpy as np

from . import kernels as compiled_kernels
from .config import ControllerConfig
from .frame import DetectorFrame
from .network import Network

__all__ = [
    "Controller",
    "SignalView",
    "MaxPressureController",
    "CityBrainController",
    "FixedTimePlan",
    "NATIVE_PROGRAMS",
    "CONTROLLER_NAMES",
    "make_controller",
]

# Controllers the simulator runs by itself, by SUMO tlLogic type.
NATIVE_PROGRAMS = {"fixed": "static", "actuated": "actuated"}


class SignalView(Protocol):
    """What a controller may read of the safety layer (arrays indexed by signal)."""

    green_phase: np.ndarray
    next_phase: np.ndarray
    stage: np.ndarray
    stage_time_s: np.ndarray
    min_green_s: np.ndarray


class Controller(Protocol):
    name: str

    def decide(self, frame: DetectorFrame, signals: SignalView, requested: np.ndarray) -> None:
        """Write into requested[i] the local phase signal i should show next, or -1 to keep."""


class MaxPressureController:
    """Varaiya's max-pressure: serve the phase with the largest sum of
    (queue upstream - queue downstream) over its green movements, queues being the
    halted vehicles of each lane's detection zone; one compiled call
    (`kernels.decide_pressure`)."""

    name = "maxpressure"

    def __init__(self, network: Network, config: ControllerConfig, kernels: ModuleType = compiled_kernels):
        self.network = network
        self.kernels = kernels
        self.demand = np.zeros(network.n_lanes)
        self.score = np.zeros(network.n_phases)
        self.max_green_s = np.full(network.n_signals, config.max_green_s)

    def decide(self, frame: DetectorFrame, signals: SignalView, requested: np.ndarray) -> None:
        net = self.network
        self.kernels.decide_pressure(
            frame.halting, net.zone_ptr, net.zone_lane, net.zone_weight, net.term_ptr, net.term_in_lane,
            net.term_out_lane, net.term_weight, net.phase_ptr, signals.green_phase, signals.stage,
            signals.stage_time_s, signals.min_green_s, self.max_green_s, self.demand, self.score, requested)


class CityBrainController:
    """A rolling-horizon schedule per signal (in the spirit of SURTRAC: Xie, Smith
    and Barlow, ICAPS 2012), re-planned every control period.

    Every period, each signal in green past its minimum green simulates its own
    approach lanes for the next `horizon_s` with a fluid queue model, once per
    phase it could start now: queues from the detectors, arrivals from the moving
    vehicles in each detection zone, each lane of the zone's arriving in the seconds
    its stretch is from the stop line (then the lane's recent mean flow),
    discharge at saturation flow while green (half of it for a lane whose links
    are only permissive in that phase; `split_lane_share` of it for a lane shared
    with turns the phase holds at red, whose queue then does not keep the phase
    green), the net's yellow and all-red plus
    a start-up loss on every switch, then the best phase to follow it (each is
    tried), and after that the phase with the most vehicles left to serve. It
    starts the phase whose schedule leaves the least waiting (vehicle-seconds);
    keeping the current one is just another candidate, so greens stretch while
    their queues discharge and end when they are served. A lane whose queue has
    stood for `max_stall_s` gets its protected phase first. Two effects
    max-pressure lacks enter the cost:
    - a vehicle sent into the queues of its exit lanes keeps waiting there
      (`downstream_weight`), and a lane whose exits are all full is not served;
    - a lane whose queue has not moved for `blocked_after_s` while green (a
      permissive turner at the head, waiting for a gap) is not served by
      continuing the current phase.
    All parameters are the same for every network (ControllerConfig); docs/controller.md
    has the evidence.
    """

    name = "citybrain"

    def __init__(self, network: Network, config: ControllerConfig, kernels: ModuleType = compiled_kernels):
        self.network = network
        self.config = config
        self.kernels = kernels
        net = network
        n = net.n_lanes
        self.queued, self.approaching = np.zeros(n), np.zeros(n)
        self.arrival_rate, self.mean_arrival_rate = np.zeros(n), np.zeros(n)
        self.service_rate, self.downstream_wait_s = np.zeros(n), np.zeros(n)
        self.blocked = np.zeros(n, dtype=bool)
        self.previous_halting, self.last_discharge_s = np.zeros(n), np.zeros(n)
        # Moving vehicles in a zone reach the stop line within the zone's free-flow time.
        reach_m = np.zeros(n)
        owner = np.repeat(np.arange(n), np.diff(net.zone_ptr))
        np.maximum.at(reach_m, owner, net.zone_offset_m + net.lane_length_m[net.zone_lane])
        self.arrival_window_s = np.maximum(reach_m / np.maximum(net.lane_speed_mps, 1.0), 1.0)
        # A moving vehicle on a zone member reaches the stop line between the times the
        # member's near and far ends are from it at free flow.
        member_speed_mps = np.maximum(net.lane_speed_mps[net.zone_lane], 1.0)
        self.zone_start_s = net.zone_offset_m / member_speed_mps
        self.zone_end_s = (net.zone_offset_m + net.lane_length_m[net.zone_lane]) / member_speed_mps
        self.arrival_profile = np.zeros((n, int(np.ceil(config.horizon_s))))
        self.exit_storage_veh = config.exit_full_share * np.maximum(net.lane_length_m / config.jam_spacing_m, 1.0)
        order = np.argsort(net.move_in_lane, kind="stable")
        self.lane_out = net.move_out_lane[order].astype(np.int32)
        self.lane_out_ptr = np.searchsorted(net.move_in_lane[order], np.arange(n + 1)).astype(np.int32)
        (self.signal_lane_ptr, self.signal_lane, self.phase_lane_ptr, self.phase_lane, self.phase_lane_share,
         self.phase_lane_holds) = _approach_lanes(net, config.permissive_share, config.split_lane_share)
        self.lost_s = np.ceil(net.yellow_s + net.all_red_s + config.start_up_lost_s)
        self.max_green_s = np.full(net.n_signals, config.called_max_green_s)
        self.least_green_s = np.zeros(net.n_signals)
        self.start_allowed = np.ones(net.n_phases, dtype=bool)
        self.plan_step = np.zeros(net.n_signals, dtype=np.int32)
        if config.phase_order not in PHASE_ORDERS:
            raise ValueError(f"unknown phase order {config.phase_order!r}; choose from {', '.join(PHASE_ORDERS)}")
        self.cyclic = net.keeps_order if config.phase_order == "program" else np.zeros(net.n_signals, dtype=bool)
        # Per (phase, lane it serves): the phase and the lane, for the calls that let a phase be skipped.
        self.entry_phase = np.repeat(np.arange(net.n_phases), np.diff(self.phase_lane_ptr))
        phase_signal = np.repeat(np.arange(net.n_signals), np.diff(net.phase_ptr))
        self.entry_lane = self.signal_lane[self.signal_lane_ptr[phase_signal[self.entry_phase]] + self.phase_lane]
        self.called = np.zeros(net.n_phases, dtype=bool)
        self.queue = np.zeros(max(int(np.diff(self.signal_lane_ptr).max(initial=0)), 1))
        self._started = False

    def decide(self, frame: DetectorFrame, signals: SignalView, requested: np.ndarray) -> None:
        net, config, k = self.network, self.config, self.kernels
        if not self._started:
            self._started = True
            self.last_discharge_s[:] = frame.time_s   # nothing is known to be blocked at the start
        k.lane_schedule_inputs(
            frame.halting, frame.vehicles, frame.time_s, net.zone_ptr, net.zone_lane, net.zone_weight,
            self.arrival_window_s, config.rate_memory_s, config.saturation_veh_per_s, self.lane_out_ptr,
            self.lane_out, self.exit_storage_veh, config.downstream_weight, config.blocked_after_s,
            self.previous_halting, self.last_discharge_s, self.queued, self.approaching,
            self.arrival_rate, self.mean_arrival_rate, self.service_rate, self.downstream_wait_s, self.blocked)
        k.arrival_profile(
            frame.vehicles, frame.halting, net.zone_ptr, net.zone_lane, net.zone_weight, self.zone_start_s,
            self.zone_end_s, self.arrival_window_s, self.mean_arrival_rate, self.arrival_profile)
        if self.cyclic.any():   # a vehicle on a lane a phase serves calls that phase
            self.called[:] = np.bincount(self.entry_phase, weights=frame.vehicles[self.entry_lane] >= 1.0,
                                         minlength=net.n_phases) > 0
        k.cyclic_starts(net.plan_ptr, net.plan_phase, net.plan_min_s, net.plan_max_s, self.cyclic, net.phase_ptr,
                        signals.green_phase, signals.stage, config.called_max_green_s, self.called, self.plan_step,
                        self.start_allowed, self.least_green_s, self.max_green_s)
        k.schedule_phases(
            self.queued, self.arrival_profile, self.mean_arrival_rate, self.service_rate,
            self.downstream_wait_s, self.blocked, self.signal_lane_ptr, self.signal_lane, net.phase_ptr,
            self.phase_lane_ptr, self.phase_lane, self.phase_lane_share, self.phase_lane_holds, net.transition_offset,
            net.needs_clearance, self.lost_s,
            signals.green_phase, signals.stage, signals.stage_time_s, signals.min_green_s, self.max_green_s,
            config.horizon_s, frame.time_s, self.last_discharge_s, config.max_stall_s, self.start_allowed, self.queue,
            requested)
        # The program's own minimum green for the step (cyclic order only; 0 elsewhere).
        requested[signals.stage_time_s < self.least_green_s] = k.KEEP


def _approach_lanes(net: Network, permissive_share: float, split_lane_share: float) -> tuple[np.ndarray, ...]:
    """CSR by signal of the lanes its phases serve; CSR by phase of the positions,
    in its signal's list, of the lanes that phase serves (from the pressure terms);
    per such entry the share of saturation flow the lane discharges at in that
    phase: 1 where one of its links is protected ('G'), else permissive_share, times
    split_lane_share where the phase holds another of its links at red; and whether
    its queue holds that phase green: not where the phase reds one of its links
    while another phase greens them all."""
    links_of: dict[tuple[int, int], list[int]] = {}   # (signal, in-lane) -> its links
    for signal, lane, link in zip(net.move_signal.tolist(), net.move_in_lane.tolist(), net.move_link.tolist()):
        links_of.setdefault((signal, lane), []).append(link)
    signal_ptr, signal_lanes, phase_ptr, phase_lanes, shares, holds = [0], [], [0], [], [], []
    for signal in range(net.n_signals):
        phases = range(net.phase_ptr[signal], net.phase_ptr[signal + 1])
        lanes = list(dict.fromkeys(int(net.term_in_lane[k]) for g in phases
                                   for k in range(net.term_ptr[g], net.term_ptr[g + 1])))
        position = {lane: i for i, lane in enumerate(lanes)}
        signal_lanes += lanes
        signal_ptr.append(len(signal_lanes))
        served_by = [sorted({position[int(net.term_in_lane[k])] for k in range(net.term_ptr[g], net.term_ptr[g + 1])})
                     for g in phases]
        link_levels = [[net.phase_green_level[net.phase_link_ptr[g]:net.phase_link_ptr[g + 1]][links_of[signal, lane]]
                        for lane in lanes] for g in phases]
        whole = {i for p, served in enumerate(served_by) for i in served if (link_levels[p][i] > 0).all()}
        for p, served in enumerate(served_by):
            phase_lanes += served
            for i in served:
                levels = link_levels[p][i]
                split = not (levels > 0).all()
                shares.append((1.0 if (levels == PROTECTED_GREEN).any() else permissive_share)
                              * (split_lane_share if split else 1.0))
                holds.append(not (split and i in whole))
            phase_ptr.append(len(phase_lanes))
    as_i32 = lambda values: np.asarray(values, dtype=np.int32)  # noqa: E731
    return (as_i32(signal_ptr), as_i32(signal_lanes), as_i32(phase_ptr), as_i32(phase_lanes), np.array(shares),
            np.array(holds, dtype=bool))


# ControllerConfig.phase_order.
PHASE_ORDERS = ("free", "program")

# network.Network.phase_green_level of a protected green ('G'; 1 is a permissive 'g').
PROTECTED_GREEN = 2


class FixedTimePlan:
    """The program's own plan, run by our safety layer: its greens in cycle order,
    with the program's own interim phases between them. A fixed-time program's
    greens end where its cycle ends them (`kernels.plan_requests`); started in step
    with the cycle (`SafetyLayer.start_on_plan`), it shows what SUMO's own run of
    the program shows. An actuated program's greens last from their minDur to their
    maxDur, ending early when no vehicle moving near the stop line calls for them
    (`kernels.actuated_requests`), as SUMO's actuated control runs them from its own
    detectors. The fallback for a
    signal whose detectors went silent or cannot see one of its approaches, and the
    gateway's local plan when the engine is gone."""

    name = "fixed-plan"

    def __init__(self, network: Network, kernels: ModuleType = compiled_kernels):
        self.network = net = network
        self.kernels = kernels
        self.everywhere = np.ones(network.n_signals, dtype=bool)
        self.static = net.program_static
        self.actuated = ~net.program_static
        self.step = np.zeros(network.n_signals, dtype=np.int32)
        # How much of each lane lies within ACTUATED_REACH_S of its stop line at its speed limit.
        self.near_share = np.minimum(ACTUATED_REACH_S * net.lane_speed_mps / np.maximum(net.lane_length_m, 1.0), 1.0)
        self.phase_demand = np.zeros(net.n_phases)
        self._active = np.zeros(network.n_signals, dtype=bool)

    def decide(self, frame: DetectorFrame | None, signals: SignalView, requested: np.ndarray,
               active: np.ndarray | None = None) -> None:
        """Overwrite requested[i] for every signal with active[i] (default: all)."""
        net, k = self.network, self.kernels
        active = self.everywhere if active is None else active
        time_s = 0.0 if frame is None else frame.time_s
        np.logical_and(active, self.static, out=self._active)
        k.plan_requests(net.plan_ptr, net.plan_phase, net.plan_end_s, net.plan_green_s, net.program_cycle_s,
                        net.program_offset_s, self._active, signals.green_phase, signals.stage, time_s, self.step,
                        requested)
        np.logical_and(active, self.actuated, out=self._active)
        if self._active.any():
            if frame is not None:
                # Vehicles calling for a phase: those moving within reach of the stop line
                # (spread evenly along the lane). A standing queue does not call: as at
                # SUMO's detectors, only vehicles passing keep a green.
                moving = np.maximum(frame.vehicles - frame.halting, 0.0)
                lane_demand = moving * self.near_share
                phase, lane = net.phase_lanes
                self.phase_demand[:] = np.bincount(phase, weights=lane_demand[lane], minlength=net.n_phases)
            k.actuated_requests(net.plan_ptr, net.plan_phase, net.plan_green_s, net.plan_min_s, net.plan_max_s,
                                net.phase_ptr, self._active, signals.green_phase, signals.stage, signals.stage_time_s,
                                self.phase_demand, self.step, requested)


# An actuated program's green is extended by a vehicle this close to the stop line
# (SUMO's defaults: detectors 2 s upstream of the line, a gap of 3 s between vehicles).
ACTUATED_REACH_S = 5.0

_ADAPTIVE = {cls.name: cls for cls in (MaxPressureController, CityBrainController)}
# "plan": the program SUMO would run, run by our engine and safety layer instead
# (it shows what `fixed` shows, step for step).
PLAN = "plan"
CONTROLLER_NAMES = (*NATIVE_PROGRAMS, PLAN, *_ADAPTIVE)


def make_controller(name: str, network: Network, config: ControllerConfig | None = None,
                    kernels: ModuleType = compiled_kernels) -> Controller:
    """`kernels`: citybrain.kernels (numba, the default) or citybrain.reference (plain numpy, for benchmarks)."""
    if name == PLAN:
        return FixedTimePlan(network, kernels)
    try:
        cls = _ADAPTIVE[name]
    except KeyError:
        raise ValueError(f"unknown controller {name!r}; choose from {', '.join((PLAN, *_ADAPTIVE))}") from None
    return cls(network, config or ControllerConfig(), kernels)
