"""The engine: one control period from detector frame to signal commands.

frame -> controller (requests) -> safety layer (what may be shown) -> command
diff. The same `Engine` serves a simulation adapter and, later, the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import ModuleType

import numpy as np

from . import kernels as compiled_kernels
from .config import SATURATION_VEH_PER_S, PreemptionConfig, SignalTiming, SupervisorConfig
from .controllers import Controller, FixedTimePlan, SignalView
from .frame import DetectorFrame
from .kernels import STAGE_GREEN
from .network import Network
from .preemption import Preemption
from .safety import SafetyLayer
from .supervisor import Supervisor

__all__ = ["Engine", "SignalCommands"]


@dataclass(frozen=True)
class SignalCommands:
    """State strings to display from now on, for the signals whose display changed;
    `released`: signals handed to their own controller from now on (each shows a
    green of its program), to run its program from the phase showing that green."""

    signals: np.ndarray        # int32 signal indices
    states: tuple[str, ...]
    released: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))


class Engine:
    def __init__(self, network: Network, controller: Controller, timing: SignalTiming | None = None,
                 kernels: ModuleType = compiled_kernels, preemption: PreemptionConfig | None = None,
                 signals_running: bool = False, supervisor: SupervisorConfig | None = None,
                 own_controllers: bool = False):
        """`signals_running`: the signals already run (in the field), and their state is
        taken over from what they report (`SafetyLayer.adopt`), never started afresh.
        `own_controllers`: each signal's own controller runs the city's program (SUMO
        does, with our repairs: `SumoOptions.safe_programs`), so an actuated signal
        that cannot count its approaches is left to it (`observe_lanes`), the
        supervisor hands one back to it (`SignalCommands.released`), and the caller
        reports what it shows (`observe_shown`) until it is taken back."""
        self.network = network
        self.controller = controller
        self.timing = timing or SignalTiming()
        self.safety = SafetyLayer(network, self.timing, kernels)
        # Where the controller is the plan itself, it is its own fallback.
        self._all_on_plan = isinstance(controller, FixedTimePlan)
        self.fallback = controller if self._all_on_plan else FixedTimePlan(network, kernels)
        preemption = preemption or PreemptionConfig()
        self.preemption = Preemption(network, self.timing, preemption, kernels) if preemption.enabled else None
        supervisor = supervisor or SupervisorConfig()
        self.requested = np.full(network.n_signals, -1, dtype=np.int32)
        self.preempting = np.zeros(network.n_signals, dtype=bool)   # stays all False without preemption
        # Signals that run the program's plan whatever their detectors say (`observe_lanes`).
        self.on_plan = np.full(network.n_signals, self._all_on_plan)
        # Signals left to their own (actuated) controller: never commanded (`observe_lanes`).
        self.local = np.zeros(network.n_signals, dtype=bool)
        # Signals their own controller runs now: `local` ones, and those the supervisor
        # handed back there. Only signals with a sound actuated program go there; a
        # fixed-time one runs as our plan, which is its own run to the digit.
        self.own_control = np.zeros(network.n_signals, dtype=bool)
        self._may_release = ((own_controllers and not self._all_on_plan)
                             & ~network.program_static & ~network.program_unsafe)
        # Do no harm: adaptive control hands a signal back to the plan (or to its own
        # controller) where it visibly loses.
        self.supervisor = (Supervisor(network, supervisor, eligible=network.program_static | self._may_release)
                           if supervisor.enabled and not self._all_on_plan else None)
        # Greens a signal's own program shows as they are: where it may be handed over.
        self._in_program = np.array([state in {phase[0] for phase in network.programs[signal]}
                                     for signal in range(network.n_signals)
                                     for state in network.phase_states[network.phase_ptr[signal]:
                                                                       network.phase_ptr[signal + 1]]], dtype=bool)
        # Per signal, its candidate greens by state string (the first, where two show the same).
        self._green_index = [{} for _ in range(network.n_signals)]
        for signal in range(network.n_signals):
            first, end = int(network.phase_ptr[signal]), int(network.phase_ptr[signal + 1])
            for phase in range(end - first):
                self._green_index[signal].setdefault(network.phase_states[first + phase], phase)
        self._shown = [""] * network.n_signals
        self._shown_s = np.zeros(network.n_signals)
        self._resumed = np.zeros(network.n_signals, dtype=bool)
        self._plan_now = np.zeros(network.n_signals, dtype=bool)
        self.prior: PriorDemand | None = None      # demand of approach lanes nobody observes
        self._started = signals_running

    def observe_lanes(self, observed: np.ndarray, modelled: np.ndarray | None = None) -> np.ndarray:
        """Which lanes (bool per lane) the detectors see, and which of those they see
        only upstream (`modelled`: their departures are modelled, not counted);
        returns per signal the share of its approach lanes they see.

        Adaptive control needs every approach's queue. A signal that counts them all
        is adaptive. One that does not is left to its own controller (`local`) where
        its program is actuated and that controller runs it safely (`own_controllers`,
        `Network.program_unsafe`): the cabinet extends its greens from its own
        detectors, which serve it better than any estimate of ours (a copy of that
        logic fed by upstream loops lost to it by 38% to 81% on the Hamburg test
        field). A fixed-time program runs as the plan through our safety layer (our
        run of it is SUMO's to the digit, and emergency preemption still reaches it).
        Elsewhere, an approach lane nobody observes gets its demand from a prior
        (`PriorDemand`: what the plan gives it), a lane seen only upstream at least
        that: a queue nobody sees would read as empty and never be served."""
        net = self.network
        pairs = net.approaches
        seen = np.bincount(pairs[0], weights=observed[pairs[1]], minlength=net.n_signals)
        share = seen / np.maximum(np.bincount(pairs[0], minlength=net.n_signals), 1)
        uncertain = np.zeros(net.n_lanes, dtype=bool)
        uncertain[pairs[1]] = ~observed[pairs[1]]
        if modelled is not None:
            uncertain |= modelled
        guessed = np.bincount(pairs[0], weights=uncertain[pairs[1]], minlength=net.n_signals) > 0
        self.local[:] = guessed & self._may_release
        self.own_control[:] = self.local
        self.on_plan[:] = (((share == 0.0) | (guessed & net.program_static)) & ~self.local) | self._all_on_plan
        uncertain[pairs[1][self.local[pairs[0]]]] = False
        if self.supervisor is not None:     # it has nothing to hand back where adaptive control never runs
            self.supervisor.eligible = self.supervisor.eligible & ~self.local & ~self.on_plan
        self.prior = (PriorDemand(net, uncertain, ~observed, self.timing.control_period_s)
                      if uncertain.any() else None)
        return share

    def on_plan_now(self) -> np.ndarray:
        """Signals running their plan whatever their detectors say: blind
        (`observe_lanes`: ours or their own controller's) or handed back by the
        supervisor (not counting stale detectors)."""
        plan = self.on_plan | self.local
        return plan if self.supervisor is None else plan | self.supervisor.on_plan

    @property
    def started(self) -> bool:
        """Whether the signals run (started by the first step, or running already)."""
        return self._started

    @property
    def signals(self) -> SafetyLayer:
        """What each signal shows, in stage-machine terms."""
        return self.safety

    def step(self, frame: DetectorFrame, fallback: np.ndarray | None = None) -> SignalCommands:
        """Decide one control period. Unless the signals are running already, the
        first call starts every signal where its program's cycle is and commands it.
        Signals with fallback[i] (their detectors are stale), on_plan[i]
        (`observe_lanes`) or handed back by the supervisor (adaptive control visibly
        losing there) run the program's plan instead, through the same safety layer. Emergency
        preemption, when on, overrides both where a vehicle needs its green;
        `preempting` then marks the signals whose minimum green it may cut."""
        if not self._started:
            self._started = True
            self.fallback.step[:] = self.safety.start_on_plan(frame.time_s)
            return self._commands(np.flatnonzero(~self.local).astype(np.int32))
        if self.prior is not None:
            frame = self.prior.fill(frame, self.safety)
        self.controller.decide(frame, self.safety, self.requested)
        plan = self.on_plan
        release = None
        if self.supervisor is not None:
            handed_back = self.supervisor.review(frame.time_s, self.timing.control_period_s, frame.halting,
                                                 self.safety.green_phase, self.safety.stage)
            plan = np.logical_or(plan, handed_back, out=self._plan_now)
            # One that goes to its own controller goes at a green of its program.
            safety = self.safety
            release = (handed_back & self._may_release & ~self.own_control & (safety.stage == STAGE_GREEN)
                       & self._in_program[self.network.phase_ptr[:-1] + safety.green_phase])
        if fallback is not None and fallback.any():
            plan = np.logical_or(plan, fallback, out=self._plan_now)
        if plan.any() and not self._all_on_plan:
            self.fallback.decide(frame, self.safety, self.requested, plan)
        if self.preemption is not None:
            self.preempting = self.preemption.plan(frame, self.safety, self.requested)
            if self.own_control.any():     # no command reaches those
                self.preempting = self.preempting & ~self.own_control
        changed = self.safety.advance(self.requested, self.preempting, plan)
        if release is not None and release.any():
            released = np.flatnonzero(release & ~changed).astype(np.int32)
            self.own_control[released] = True
            for signal, state in zip(released.tolist(), self.safety.state_strings(released)):
                self._shown[signal] = state
            self._shown_s[released] = self.safety.stage_time_s[released]
        else:
            released = np.zeros(0, dtype=np.int32)
        send = (changed | self._resumed) & ~self.own_control
        self._resumed[:] = False
        signals = np.flatnonzero(send).astype(np.int32)
        return SignalCommands(signals, self.safety.state_strings(signals), released)

    def observe_shown(self, states: list[str], dt_s: float) -> None:
        """What every signal showed over the last `dt_s` (with `own_controllers`).
        Signals their own controller runs are followed here at each green of ours
        they show (so the dashboard and the supervisor see what they show); one
        whose hand-back is over is taken back at such a green, from the time it
        has shown it."""
        if not self.own_control.any():
            return
        seen, phases, shown_s = [], [], []
        for signal in np.flatnonzero(self.own_control).tolist():
            state = states[signal]
            # Counted from when it was first seen: never more than it has shown.
            self._shown_s[signal] = self._shown_s[signal] + dt_s if state == self._shown[signal] else 0.0
            self._shown[signal] = state
            phase = self._green_index[signal].get(state, -1)
            if phase < 0:
                continue
            seen.append(signal)
            phases.append(phase)
            shown_s.append(self._shown_s[signal])
            if not self.local[signal] and not self.supervisor.on_plan[signal]:
                self.own_control[signal] = False
                self._resumed[signal] = True
        if seen:
            phase = np.array(phases, dtype=np.int32)
            # The next step adds dt_s to it (`SafetyLayer.adopt`).
            self.safety.adopt(np.array(seen, dtype=np.int32), phase, phase,
                              np.full(len(seen), STAGE_GREEN, dtype=np.int8), np.array(shown_s), lag_s=dt_s)

    def _commands(self, signals: np.ndarray) -> SignalCommands:
        return SignalCommands(signals, self.safety.state_strings(signals))


class PriorDemand:
    """The demand of approach lanes detectors do not count, from what the city's plan
    gives them: each such lane receives vehicles at the rate that fills its plan
    green at saturation flow (arrivals = PLANNED_SATURATION x saturation flow x its
    plan share of the cycle), and discharges them at saturation flow while its
    signal shows it green. Its queue then grows while it waits and empties when
    served, so adaptive control keeps giving it about the green the plan gives it,
    and more when it has waited longer. An unobserved lane reads this queue; a lane
    seen only upstream (whose departures are modelled) reads at least it."""

    def __init__(self, network: Network, lanes: np.ndarray, unobserved: np.ndarray, period_s: float,
                 saturation_veh_per_s: float = SATURATION_VEH_PER_S):
        self.network = network
        self.lanes = np.flatnonzero(lanes)
        self.unobserved = unobserved[self.lanes]
        self.period_s = period_s
        self.saturation_veh_per_s = saturation_veh_per_s
        self.arrival_veh_per_s = PLANNED_SATURATION * saturation_veh_per_s * network.lane_plan_share[self.lanes]
        self.queue_veh = np.zeros(self.lanes.size)

    def fill(self, frame: DetectorFrame, signals: SignalView) -> DetectorFrame:
        """`frame` with the prior queues on the unobserved lanes (its arrays are not changed)."""
        green = self.network.lanes_green(signals.green_phase, signals.stage)[self.lanes]
        self.queue_veh += self.arrival_veh_per_s * self.period_s
        self.queue_veh -= np.where(green, np.minimum(self.queue_veh, self.saturation_veh_per_s * self.period_s), 0.0)
        vehicles, halting = frame.vehicles.copy(), frame.halting.copy()
        floor = np.where(self.unobserved, 0.0, halting[self.lanes])
        halting[self.lanes] = np.maximum(floor, self.queue_veh)
        vehicles[self.lanes] = np.maximum(np.where(self.unobserved, 0.0, vehicles[self.lanes]), halting[self.lanes])
        return replace(frame, vehicles=vehicles, halting=halting)


# Of its plan green, the share an unobserved lane is taken to need: all of it. The
# plan is all we know of that lane, and real cities run near saturation. Taking
# less (0.85, a typical design degree of saturation) let adaptive control give
# such lanes less than the plan does: on ingolstadt21 with its real loops
# (seed 42, all-vehicle delay) 217 s against 147 s with all of it, and 148 s for
# the city's plan.
PLANNED_SATURATION = 1.0
