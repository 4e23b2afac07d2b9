"""Add emergency vehicles to any scenario: a new scenario folder whose
`.sumocfg` names the original net and demand where they are (nothing is
copied) plus `emergency.rou.xml`.

Routes are drawn, with a fixed seed, among the fastest routes without U-turns
between random roads of the net (a station, an incident), preferring those
through the most signals: an ambulance crossing the city. The vehicles have vClass
"emergency" but no bluelight device, so they cannot run red lights: whatever
green they get comes from the signal control alone.
"""
from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import numpy as np

from .network import Network, load_scenario_network
from .preemption import signal_turns
from .scenario import load_scenario

__all__ = ["add_emergency_vehicles", "crossing_routes"]

EMERGENCY_TYPE = "citybrain_emergency"
# Free-flow time from a route's start to its first signal: time for any signal
# to end a conflicting green and clear it (2 s + yellow + all-red) with margin.
MIN_RUN_UP_S = 12.0


def crossing_routes(network: Network, count: int, seed: int, samples: int = 400) -> list[tuple[int, ...]]:
    """`count` routes (edge indices) through many signals, drawn reproducibly."""
    graph, turns = network.graph, signal_turns(network)
    # Any road may be a start (a station) or a destination (an incident), but a
    # trip must not end in the queue before a signal it never crosses (SUMO
    # vehicles arrive at the end of their last edge), nor start so close to its
    # first signal that no controller could clear it in time.
    into_signal = {edge for edge, _ in turns}
    sources = [e for e in graph.nodes if graph.out_degree(e) > 0]
    sinks = [e for e in graph.nodes if graph.in_degree(e) > 0 and e not in into_signal]
    free_flow_s = network.edge_length_m / np.maximum(network.edge_speed_mps, 0.1)
    rng = np.random.default_rng(seed)
    candidates: dict[tuple[int, ...], int] = {}
    for _ in range(samples):
        start, end = int(rng.choice(sources)), int(rng.choice(sinks))
        if start == end:
            continue
        try:
            path = nx.shortest_path(graph, start, end, weight=_no_turnarounds)
        except nx.NetworkXNoPath:
            continue
        route = tuple(int(e) for e in path)
        first = next((k for k, pair in enumerate(zip(route, route[1:])) if pair in turns), None)
        if first is not None and free_flow_s[list(route[:first + 1])].sum() < MIN_RUN_UP_S:
            continue
        candidates[route] = len({turns[pair].signal for pair in zip(route, route[1:]) if pair in turns})
    if not candidates:
        raise ValueError(f"{network.path}: found no route through the net for emergency vehicles")
    pool = sorted(candidates, key=lambda route: -candidates[route])[:max(3 * count, 1)]
    picks = rng.choice(len(pool), size=count, replace=count > len(pool))
    return [pool[i] for i in picks]


def _no_turnarounds(u: int, v: int, data: dict) -> float | None:
    """Routes without U-turns: an ambulance does not wait for a gap to turn around."""
    return None if data["turnaround"] else data["travel_time_s"]


def add_emergency_vehicles(scenario_path: str | Path, out: str | Path, count: int = 10, seed: int = 1,
                           speed_factor: float = 1.2, departs: tuple[float, float] = (0.1, 0.7)) -> Path:
    """Write the emergency variant of a scenario into folder `out`; returns its .sumocfg.

    Vehicles depart evenly between the two fractions `departs` of the
    scenario's time window (by default 10% to 70%, so each has time to cross
    before the end)."""
    scenario = load_scenario(scenario_path)
    network = load_scenario_network(scenario)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    span = scenario.end_s - scenario.begin_s
    first, last = (scenario.begin_s + fraction * span for fraction in departs)
    departs = np.linspace(first, last, count) if count > 1 else np.array([first])
    lines = ["<routes>",
             f'    <vType id="{EMERGENCY_TYPE}" vClass="emergency" guiShape="emergency" color="1,0,0" '
             f'speedFactor="{speed_factor:g}" speedDev="0"/>']
    for number, (depart, route) in enumerate(zip(departs, crossing_routes(network, count, seed))):
        edges = " ".join(network.edge_ids[e] for e in route)
        lines.append(f'    <vehicle id="emergency{number}" type="{EMERGENCY_TYPE}" depart="{depart:.0f}" '
                     f'departLane="best" departSpeed="max">')
        lines.append(f'        <route edges="{edges}"/>')
        lines.append("    </vehicle>")
    lines.append("</routes>")
    (out / "emergency.rou.xml").write_text("\n".join(lines) + "\n")

    def here(path: Path) -> str:
        return Path(os.path.relpath(path, out.resolve())).as_posix()

    routes = ",".join([*(here(p) for p in scenario.route_files), "emergency.rou.xml"])
    additional = ",".join(here(p) for p in scenario.additional_files)
    config = out / f"{out.resolve().name}.sumocfg"
    config.write_text(
        "<configuration>\n"
        "    <input>\n"
        f'        <net-file value="{here(scenario.net_file)}"/>\n'
        f'        <route-files value="{routes}"/>\n'
        + (f'        <additional-files value="{additional}"/>\n' if additional else "")
        + "    </input>\n"
        "    <time>\n"
        f'        <begin value="{scenario.begin_s:g}"/>\n'
        f'        <end value="{scenario.end_s:g}"/>\n'
        "    </time>\n"
        "</configuration>\n")
    return config
