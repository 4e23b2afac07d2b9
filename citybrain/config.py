"""Configuration: frozen dataclasses, units in the names."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SignalTiming", "ControllerConfig"]


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

    def min_green_of(self, clearance_s):
        """Per-signal minimum green for an array of clearance times."""
        return np.maximum(self.min_green_s, self.min_green_per_clearance * clearance_s)


@dataclass(frozen=True)
class ControllerConfig:
    """Parameters of the adaptive controllers: one default for every network."""

    max_green_s: float = 60.0
    # Weight of a moving (not yet queued) vehicle relative to a halted one.
    moving_vehicle_weight: float = 0.25
