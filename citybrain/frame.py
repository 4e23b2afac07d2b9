"""What detectors and cameras report, as arrays indexed like `Network.lane_ids`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DetectorFrame"]


@dataclass(frozen=True)
class DetectorFrame:
    time_s: float
    vehicles: np.ndarray    # float64 [lanes]: vehicles on the lane
    halting: np.ndarray     # float64 [lanes]: of those, vehicles below 0.1 m/s
    occupancy: np.ndarray   # float64 [lanes]: share of the lane covered by vehicles, 0..1
