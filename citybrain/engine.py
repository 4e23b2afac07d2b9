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
                 kernels: ModuleType = compiled_kernels, preemption: PreemptionConfig | None = None):
        self.network = network
        self.controller = controller
        self.timing = timing or SignalTiming()
        self.safety = SafetyLayer(network, self.timing, kernels)
        self.fallback = FixedTimePlan(network, self.timing.control_period_s, kernels)
        preemption = preemption or PreemptionConfig()
        self.preemption = Preemption(network, self.timing, preemption, kernels) if preemption.enabled else None
        self.requested = np.full(network.n_signals, -1, dtype=np.int32)
        self.preempting = np.zeros(network.n_signals, dtype=bool)   # stays all False without preemption
        self._started = False

    @property
    def signals(self) -> SafetyLayer:
        """What each signal shows, in stage-machine terms."""
        return self.safety

    def step(self, frame: DetectorFrame, fallback: np.ndarray | None = None) -> SignalCommands:
        """Decide one control period. The first call commands every signal.

        Signals with fallback[i] (their detectors are stale) run the net's
        fixed-time plan instead, through the same safety layer. Emergency
        preemption, when on, overrides both where a vehicle needs its green;
        `preempting` then marks the signals whose minimum green it may cut."""
        if not self._started:
            self._started = True
            return self._commands(np.arange(self.network.n_signals, dtype=np.int32))
        self.controller.decide(frame, self.safety, self.requested)
        if fallback is not None and fallback.any():
            self.fallback.decide(frame, self.safety, self.requested, fallback)
        if self.preemption is not None:
            self.preempting = self.preemption.plan(frame, self.safety, self.requested)
        changed = self.safety.advance(self.requested, self.preempting)
        return self._commands(np.flatnonzero(changed).astype(np.int32))

    def _commands(self, signals: np.ndarray) -> SignalCommands:
        return SignalCommands(signals, self.safety.state_strings(signals))
