"""What detectors and cameras report, as arrays indexed like `Network.lane_ids`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DetectorFrame", "EmergencyVehicle"]


@dataclass(frozen=True)
class EmergencyVehicle:
    """An emergency vehicle as last reported, in network indices (adapters map ids)."""

    vehicle_id: str
    edge: int                  # index into Network.edge_ids
    position_m: float          # from the start of that edge
    speed_mps: float
    route: tuple[int, ...]     # edges ahead, current edge first; () when unknown
    destination: int           # an edge to route to when the route is unknown, else -1
    priority: int              # lower is more urgent
    seen_s: float              # when it was reported


@dataclass(frozen=True)
class DetectorFrame:
    time_s: float
    vehicles: np.ndarray    # float64 [lanes]: vehicles on the lane
    halting: np.ndarray     # float64 [lanes]: of those, vehicles below 0.1 m/s
    occupancy: np.ndarray   # float64 [lanes]: share of the lane covered by vehicles, 0..1
    emergency: tuple[EmergencyVehicle, ...] = ()
