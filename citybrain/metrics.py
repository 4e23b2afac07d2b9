"""Trip metrics from SUMO's tripinfo output, defined as RESCO defines them."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TripMetrics", "read_tripinfo"]


@dataclass(frozen=True)
class TripMetrics:
    mean_delay_s: float          # timeLoss + departDelay, per arrived vehicle
    mean_travel_time_s: float    # duration
    mean_waiting_s: float        # waitingTime (time below 0.1 m/s)
    mean_stops: float            # waitingCount
    throughput_veh: int          # vehicles that arrived
    unfinished_veh: int          # still driving (or waiting to depart) at the end

    def as_dict(self) -> dict:
        return asdict(self)


def read_tripinfo(path: str | Path, loaded_veh: int) -> TripMetrics:
    """Metrics over arrived vehicles; `unfinished_veh` keeps a controller that
    holds vehicles back from looking good on the arrived ones alone."""
    delay = travel = waiting = stops = 0.0
    arrived = 0
    for _, element in ET.iterparse(str(path)):
        if element.tag != "tripinfo":
            continue
        arrived += 1
        delay += float(element.get("timeLoss")) + float(element.get("departDelay"))
        travel += float(element.get("duration"))
        waiting += float(element.get("waitingTime"))
        stops += float(element.get("waitingCount"))
        element.clear()
    n = max(arrived, 1)
    return TripMetrics(
        mean_delay_s=delay / n,
        mean_travel_time_s=travel / n,
        mean_waiting_s=waiting / n,
        mean_stops=stops / n,
        throughput_veh=arrived,
        unfinished_veh=max(loaded_veh - arrived, 0),
    )
