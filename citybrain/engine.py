"""The engine: one control period from detector frame to signal commands.

frame -> controller (requests) -> safety layer (what may be shown) -> command
diff. The same `Engine` serves a simulation adapter and, later, the wire.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import kernels as compiled_kernels
from .config import PreemptionConfig, SignalTiming
from .controllers import Controller, FixedTimePlan
from .frame import DetectorFrame
from .network import Network
from .preemption import Preemption
from .safety import SafetyLayer

__all__ = ["Engine", "SignalCommands"]


@dataclass(frozen=True)
class SignalCommands:
    """State strings to display from now on, for the signals whose display changed."""

    signals: np.ndarray        # int32 signal indices
    states: tuple[str, ...]


class Engine:
    def __init__(self, network: Network, controller: Controller, timing: SignalTiming | None = None,
                 kernels: ModuleType = compiled_kernels, preemption: PreemptionConfig | None = None,
                 signals_running: bool = False):
        """`signals_running`: the signals already run (in the field), and their state is
        taken over from what they report (`SafetyLayer.adopt`), never started afresh."""
        self.network = network
        self.controller = controller
        self.timing = timing or SignalTiming()
        self.safety = SafetyLayer(network, self.timing, kernels)
        # Where the controller is the plan itself, it is its own fallback.
        self._all_on_plan = isinstance(controller, FixedTimePlan)
        self.fallback = controller if self._all_on_plan else FixedTimePlan(network, kernels)
        preemption = preemption or PreemptionConfig()
        self.preemption = Preemption(network, self.timing, preemption, kernels) if preemption.enabled else None
        self.requested = np.full(network.n_signals, -1, dtype=np.int32)
        self.preempting = np.zeros(network.n_signals, dtype=bool)   # stays all False without preemption
        # Signals that run the program's plan whatever their detectors say (`observe_lanes`).
        self.on_plan = np.full(network.n_signals, self._all_on_plan)
        self._plan_now = np.zeros(network.n_signals, dtype=bool)
        self._started = signals_running

    def observe_lanes(self, observed: np.ndarray) -> np.ndarray:
        """Which lanes (bool per lane) the detectors see; returns per signal the share
        of its approach lanes they cover. A signal with an approach lane nobody
        observes runs its program's plan: a queue nobody sees reads as empty and
        would never be served."""
        net = self.network
        pairs = np.unique(np.stack([net.move_signal, net.move_in_lane]), axis=1)
        seen = np.bincount(pairs[0], weights=observed[pairs[1]], minlength=net.n_signals)
        share = seen / np.maximum(np.bincount(pairs[0], minlength=net.n_signals), 1)
        self.on_plan[:] = (share < 1.0) | self._all_on_plan
        return share

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
        first call starts every signal where its program's cycle is and commands it. Signals with
        fallback[i] (their detectors are stale) or on_plan[i] (`observe_lanes`)
        run the program's plan instead, through the same safety layer. Emergency
        preemption, when on, overrides both where a vehicle needs its green;
        `preempting` then marks the signals whose minimum green it may cut."""
        if not self._started:
            self._started = True
            self.fallback.step[:] = self.safety.start_on_plan(frame.time_s)
            return self._commands(np.arange(self.network.n_signals, dtype=np.int32))
        self.controller.decide(frame, self.safety, self.requested)
        plan = self.on_plan
        if fallback is not None and fallback.any():
            plan = np.logical_or(self.on_plan, fallback, out=self._plan_now)
        if plan.any() and not self._all_on_plan:
            self.fallback.decide(frame, self.safety, self.requested, plan)
        if self.preemption is not None:
            self.preempting = self.preemption.plan(frame, self.safety, self.requested)
        changed = self.safety.advance(self.requested, self.preempting, plan)
        return self._commands(np.flatnonzero(changed).astype(np.int32))

    def _commands(self, signals: np.ndarray) -> SignalCommands:
        return SignalCommands(signals, self.safety.state_strings(signals))
