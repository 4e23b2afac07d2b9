"""Trip metrics from SUMO's tripinfo output, defined as RESCO defines them.

Emergency vehicles are measured apart, so the headline figures stay those of
ordinary traffic (and stay comparable with RESCO's, which has none)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TripMetrics", "EmergencyMetrics", "read_tripinfo"]


@dataclass(frozen=True)
class TripMetrics:
    mean_delay_s: float | None   # timeLoss + departDelay, per arrived vehicle (None: none arrived)
    mean_travel_time_s: float | None    # duration
    mean_waiting_s: float | None        # waitingTime (time below 0.1 m/s)
    mean_stops: float | None            # waitingCount
    throughput_veh: int          # vehicles that arrived
    unfinished_veh: int          # still driving (or waiting to depart) at the end
    # RESCO's own figure (its utils/readXML.py): timeLoss + departDelay over every
    # vehicle, arrived or not, counted up to the end; a vehicle still waiting to
    # depart adds its whole wait. Stricter than mean_delay_s when traffic backs up.
    resco_delay_s: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EmergencyMetrics:
    """The same, over emergency vehicles that arrived (None when there were none)."""

    ev_count: int
    ev_mean_delay_s: float | None
    ev_mean_travel_time_s: float | None
    ev_mean_stops: float | None

    def as_dict(self) -> dict:
        return asdict(self)


class _Sums:
    def __init__(self) -> None:
        self.count = 0
        self.delay = self.travel = self.waiting = self.stops = 0.0

    def add(self, trip) -> None:
        self.count += 1
        self.delay += float(trip.get("timeLoss")) + float(trip.get("departDelay"))
        self.travel += float(trip.get("duration"))
        self.waiting += float(trip.get("waitingTime"))
        self.stops += float(trip.get("waitingCount"))

    def mean(self, total: float) -> float | None:
        return total / self.count if self.count else None


def read_tripinfo(path: str | Path, loaded_veh: int,
                  emergency_ids: frozenset[str] = frozenset()) -> tuple[TripMetrics, EmergencyMetrics]:
    """Metrics over arrived vehicles, emergency vehicles (`emergency_ids`) apart
    from all others; `unfinished_veh` and `resco_delay_s` keep a controller that
    holds vehicles back from looking good on the arrived ones alone. The file is
    SUMO's tripinfo written with unfinished and undeparted trips."""
    others, emergency, every = _Sums(), _Sums(), _Sums()
    for _, element in ET.iterparse(str(path)):
        if element.tag != "tripinfo":
            continue
        if element.get("id") not in emergency_ids:
            every.add(element)
        if float(element.get("arrival", "-1")) >= 0:   # SUMO writes -1 for trips unfinished at the end
            (emergency if element.get("id") in emergency_ids else others).add(element)
        element.clear()
    # With no vehicle arrived (or none loaded) a mean is None, never a flattering 0.
    trips = TripMetrics(
        mean_delay_s=others.mean(others.delay),
        mean_travel_time_s=others.mean(others.travel),
        mean_waiting_s=others.mean(others.waiting),
        mean_stops=others.mean(others.stops),
        throughput_veh=others.count,
        unfinished_veh=max(loaded_veh - len(emergency_ids) - others.count, 0),
        resco_delay_s=every.mean(every.delay),
    )
    return trips, EmergencyMetrics(len(emergency_ids), emergency.mean(emergency.delay),
                                   emergency.mean(emergency.travel), emergency.mean(emergency.stops))
