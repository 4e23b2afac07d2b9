"""`citybrain bench`: decision latency, wire latency, SUMO scaling, traffic outcomes.

Every figure is measured when the command runs; nothing here is a constant.
Generated grids and their compiled networks are cached under `cache`
(default results/bench-cache/), because a 10,000-signal grid takes ~20 s to
generate and ~20 s to compile.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np

from . import kernels, protocol, reference
from .config import PreemptionConfig, SignalTiming
from .controllers import make_controller
from .emergency_demand import crossing_routes
from .engine import Engine
from .frame import DetectorFrame, EmergencyVehicle
from .preemption import Preemption
from .field import FieldConfig, FieldEngine
from .grids import DEFAULT_CACHE, bench_grid
from .network import COMPILED_FORMAT, Network, load_network
from .run import RunOptions, simulate, simulate_in_processes, sumo_versions
from .scenario import load_scenario
from .sumo_home import ensure_sumo_home, sumo_tool
from .wire import GatewayLink

__all__ = ["latency", "wire", "scale", "scenarios", "published_resco", "preemption_planning", "emergency",
           "emergency_markdown", "RESCO_MAPS"]

RESCO_MAPS = ("cologne1", "cologne3", "cologne8", "ingolstadt1", "ingolstadt7", "ingolstadt21", "grid4x4",
              "arterial4x4")


def cached_network(n_signals: int, cache: Path = DEFAULT_CACHE) -> tuple[Path, Network]:
    """A generated grid of `n_signals` and its compiled network (pickled beside it)."""
    net_file = bench_grid(n_signals, cache)
    pickled = net_file.with_suffix(f".network-v{COMPILED_FORMAT}.pickle")
    if pickled.exists() and pickled.stat().st_mtime >= net_file.stat().st_mtime:
        with open(pickled, "rb") as stream:
            network = pickle.load(stream)
        if {f.name for f in fields(Network)} <= vars(network).keys():   # none missing
            return net_file, network
    network = load_network(net_file)
    with open(pickled, "wb") as stream:
        pickle.dump(network, stream, protocol=pickle.HIGHEST_PROTOCOL)
    return net_file, network


def _synthetic_frames(network: Network, count: int, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        vehicles = rng.poisson(3.0, network.n_lanes).astype(np.float32)
        halting = np.minimum(vehicles, rng.poisson(2.0, network.n_lanes)).astype(np.float32)
        frames.append((vehicles, halting, vehicles / 30))
    return frames


# -- latency -----------------------------------------------------------------

def _decision_samples(network: Network, controller: str, ops, repeat: int, frames, warm_up: int = 32,
                      budget_s: float | None = None) -> np.ndarray:
    """Time the full decision step: a frame's lanes validated and merged into the
    engine's state, the controller, the safety layer, per-gateway command diff
    and its encoding. The frame arrives already decoded (the wire is `bench wire`).
    With `budget_s`, stops once that much time went into timed steps (at least 3)."""
    field = FieldEngine(network, make_controller(controller, network, kernels=ops), SignalTiming(),
                        FieldConfig(clock="frames"), kernels=ops)
    gateway = b"bench"
    field.receive(gateway, protocol.encode(protocol.Hello(1, 0.0, "bench", network.signal_ids, network.lane_ids)),
                  0.0, 0.0)
    session = field.sessions[gateway]
    messages = [protocol.DetectorMessage(i + 2, float(i), None, *frames[i % len(frames)])
                for i in range(repeat + warm_up)]
    for message in messages[:warm_up]:                # JIT warm-up and the first, full command
        field.merge_counts(session, message)
        field.step(0.0)
    samples = []
    for message in messages[warm_up:]:
        start = time.perf_counter_ns()
        field.merge_counts(session, message)
        field.step(0.0)
        samples.append((time.perf_counter_ns() - start) / 1000.0)
        if budget_s is not None and len(samples) >= 3 and sum(samples) > budget_s * 1e6:
            break
    return np.array(samples)


# Wall time the numpy reference gets per size in `bench latency`.
NUMPY_BUDGET_S = 30.0


def latency(sizes: list[int], repeat: int = 2000, numpy_repeat: int = 200, cache: Path = DEFAULT_CACHE,
            log: Callable[[str], None] = print, controller: str = "citybrain") -> dict:
    results = {}
    for size in sizes:
        _, network = cached_network(size, cache)
        frames = _synthetic_frames(network, 16)
        fast = _decision_samples(network, controller, kernels, repeat, frames)
        # The numpy reference needs no JIT warm-up, only the minimum green to pass (before
        # that no signal decides), and on big grids it takes seconds a step.
        min_green_s = SignalTiming().min_green_of(network.yellow_s + network.all_red_s).max()
        slow = _decision_samples(network, controller, reference, numpy_repeat, frames,
                                 warm_up=int(np.ceil(min_green_s)) + 2, budget_s=NUMPY_BUDGET_S)
        p50, p99, worst = np.percentile(fast, [50, 99, 100])
        numpy_p50 = float(np.percentile(slow, 50))
        results[str(size)] = {
            "signals": network.n_signals, "lanes": network.n_lanes, "movements": int(network.move_signal.size),
            "phases": network.n_phases, "repeat": repeat,
            "p50_us": round(float(p50), 1), "p99_us": round(float(p99), 1), "max_us": round(float(worst), 1),
            "numpy_p50_us": round(numpy_p50, 1), "numpy_over_numba": round(numpy_p50 / float(p50), 1),
            "numpy_repeat": len(slow),
        }
        r = results[str(size)]
        log(f"{controller}, {size:>6} signals ({r['lanes']} lanes): p50 {r['p50_us']:.0f} us  p99 {r['p99_us']:.0f} us  "
            f"max {r['max_us']:.0f} us; numpy reference p50 {r['numpy_p50_us']:.0f} us "
            f"({r['numpy_over_numba']:.1f}x)")
    return {"controller": controller, "sizes": results, "machine": _machine()}


# -- wire --------------------------------------------------------------------

def _start_engine(net_file: Path, period_s: float, controller: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "citybrain.cli", "serve", str(net_file), "--clock", "frames",
                             "--period", str(period_s), "--bind", "tcp://127.0.0.1:*", "--metrics-port", "-1",
                             "--controller", controller],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        match = re.search(r"listening on (\S+);", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, match.group(1)
    raise RuntimeError(f"citybrain serve did not start (exit {proc.wait()})")


def _wire_one(size: int, rate_hz: float, seconds: float, cache: Path, controller: str) -> dict:
    """`citybrain serve` in its own process; this process plays a gateway sending
    a full frame at `rate_hz` and timing each until the command answering it."""
    net_file, network = cached_network(size, cache)
    period_s = 1.0 / rate_hz
    engine, endpoint = _start_engine(net_file, period_s, controller)
    try:
        link = GatewayLink(endpoint)
        seq = 1
        deadline = time.monotonic() + 300
        while not link.send(protocol.encode(protocol.Hello(seq, 0.0, "bench", network.signal_ids,
                                                           network.lane_ids))):
            if time.monotonic() > deadline:
                raise RuntimeError("engine unreachable")
            time.sleep(0.05)
        if link.receive(300.0) is None:
            raise RuntimeError("no welcome from the engine")
        seq += 1    # what the signals show (each in its first green), so the engine commands them
        n = network.n_signals
        link.send(protocol.encode(protocol.StateReport(seq, 0.0, -1, "local", np.zeros(n, np.int16),
                                                       np.zeros(n, np.int16), np.zeros(n, np.uint8),
                                                       np.full(n, 60.0), ())))
        frames = _synthetic_frames(network, 16)
        n_frames = max(1, int(seconds * rate_hz))
        latencies, lost, frame_bytes = [], 0, 0
        start = time.monotonic()
        for i in range(n_frames):
            time.sleep(max(0.0, start + i * period_s - time.monotonic()))
            seq += 1
            data = protocol.encode(protocol.DetectorMessage(seq, i * period_s, None, *frames[i % len(frames)]))
            frame_bytes = len(data)
            sent = time.perf_counter()
            link.send(data)
            while True:
                reply = link.receive(max(period_s, 1.0))
                if reply is None:
                    lost += 1
                    break
                message = protocol.decode(reply)
                if isinstance(message, protocol.SignalCommand) and message.frame_seq == seq:
                    latencies.append(time.perf_counter() - sent)
                    break
        achieved_hz = n_frames / (time.monotonic() - start)
        link.close()
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(60)
    lat = np.array(latencies) * 1e6 if latencies else np.array([np.nan])
    return {"signals": network.n_signals, "lanes": network.n_lanes, "rate_hz": rate_hz, "frames": n_frames,
            "answered": len(latencies), "lost": lost, "achieved_hz": round(achieved_hz, 2),
            "frame_bytes": frame_bytes, "p50_us": round(float(np.percentile(lat, 50)), 1),
            "p99_us": round(float(np.percentile(lat, 99)), 1), "max_us": round(float(np.max(lat)), 1)}


def wire(sizes: list[int], rate_hz: float = 10.0, seconds: float = 30.0, cache: Path = DEFAULT_CACHE,
         log: Callable[[str], None] = print, controller: str = "citybrain") -> dict:
    results = {}
    for size in sizes:
        r = results[str(size)] = _wire_one(size, rate_hz, seconds, cache, controller)
        log(f"{controller}, {size:>6} signals, {r['frame_bytes'] / 1e3:.0f} kB frames at {rate_hz:g} Hz "
            f"(achieved {r['achieved_hz']:g}): frame->command p50 {r['p50_us']:.0f} us  p99 {r['p99_us']:.0f} us  "
            f"max {r['max_us']:.0f} us; {r['answered']}/{r['frames']} answered, {r['lost']} lost")
    return {"controller": controller, "sizes": results, "machine": _machine()}


# -- scale -------------------------------------------------------------------

def _grid_scenario(size: int, seconds: float, cache: Path) -> Path:
    """A scenario on the generated grid: random trips, 70 per signal and hour
    (grid10x10's density), routed by SUMO at departure."""
    net_file = bench_grid(size, cache)
    folder = cache / f"grid{size}-scale-{seconds:g}s"
    config = folder / "scale.sumocfg"
    if config.exists():
        return config
    folder.mkdir(parents=True, exist_ok=True)
    ensure_sumo_home()
    trips = (folder / "trips.xml").resolve()
    period = 3600.0 / (70 * size)
    subprocess.run([sys.executable, str(sumo_tool("randomTrips.py")), "-n", str(net_file.resolve()), "-o", str(trips),
                    "-b", "0", "-e", f"{seconds:g}", "-p", f"{period:.6f}", "--seed", "42", "--fringe-factor", "10",
                    "--min-distance", "400"], check=True, capture_output=True,
                   cwd=folder)  # randomTrips' validation leaves routes.rou.xml in its working folder
    config.write_text(f"""<configuration>
    <input><net-file value="{net_file.resolve()}"/><route-files value="trips.xml"/></input>
    <time><begin value="0"/><end value="{seconds:g}"/></time>
</configuration>
""")
    return config


def scale(sizes: list[int], seconds: float = 60.0, cache: Path = DEFAULT_CACHE,
          log: Callable[[str], None] = print, controller: str = "citybrain") -> dict:
    """`controller` in SUMO on each grid; wall time per simulated second, split."""
    results = {}
    for size in sizes:
        config = _grid_scenario(size, seconds, cache)
        run = simulate(config, controller, RunOptions())
        split = run["timing"]
        per_s = {k: v / run["simulated_s"] for k, v in split.items()}
        wall = run["wall_s"] / run["simulated_s"]
        results[str(size)] = {
            "signals": run["signals"], "simulated_s": run["simulated_s"], "vehicles_arrived": run["throughput_veh"],
            "wall_per_sim_s": round(wall, 4),
            **{f"{k}_per_sim_s": round(v, 4) for k, v in per_s.items()},
            "engine_share": round(per_s["engine_s"] / wall, 4),
        }
        r = results[str(size)]
        log(f"{controller}, {size:>6} signals: {r['wall_per_sim_s'] * 1e3:.1f} ms wall per simulated s: SUMO step "
            f"{r['sumo_step_s_per_sim_s'] * 1e3:.1f}, SUMO reads/writes {r['sumo_io_s_per_sim_s'] * 1e3:.1f}, "
            f"engine {r['engine_s_per_sim_s'] * 1e3:.2f} ({r['engine_share']:.1%}), safety audit "
            f"{r['audit_s_per_sim_s'] * 1e3:.1f}")
    return {"controller": controller, "sizes": results, "machine": _machine()}


# -- scenarios ---------------------------------------------------------------

def scenarios(configs: dict[str, Path], controllers: tuple[str, ...], seeds: tuple[int, ...],
              workers: int | None = None, end_s: float | None = None, detectors: str = "auto",
              min_all_red_s: float = 0.0, progress: Callable[[float], Callable[[float], None]] | None = None,
              sumo_home: str | None = None) -> dict:
    """Every controller on every scenario and seed, one simulation per process, as many as cores.
    `detectors`: what our controllers see (run.RunOptions.detectors); `min_all_red_s`:
    SignalTiming.min_all_red_s; `sumo_home`: another SUMO installation, run through TraCI."""
    jobs, names = [], []
    total_s = 0.0
    for name, config in configs.items():
        begin, end = load_scenario(config).window(None, end_s)
        for controller in controllers:
            for seed in seeds:
                jobs.append((str(config), controller, RunOptions(
                    backend="traci" if sumo_home else "libsumo", seed=seed, end_s=end, detectors=detectors,
                    timing=SignalTiming(min_all_red_s=min_all_red_s), sumo_home=sumo_home)))
                names.append(name)
                total_s += end - begin
    results = simulate_in_processes(jobs, workers, progress(total_s) if progress else None)
    sumo_version = sumo_versions(results)
    runs: dict[str, dict[str, list[dict]]] = {name: {c: [] for c in controllers} for name in configs}
    for name, (_, controller, _), result in zip(names, jobs, results):
        runs[name][controller].append(result)
    summary = {}
    for name, by_controller in runs.items():
        summary[name] = {}
        for controller, results in by_controller.items():
            delays = np.array([r["mean_delay_s"] for r in results], dtype=float)   # None (no arrival): nan
            resco_delays = np.array([r["resco_delay_s"] for r in results], dtype=float)
            summary[name][controller] = {
                "mean_delay_s": round(float(delays.mean()), 2),
                "delay_std_s": round(float(delays.std(ddof=1)), 2) if len(delays) > 1 else 0.0,
                "delay_by_seed": [round(float(d), 2) for d in delays],
                "resco_delay_s": round(float(resco_delays.mean()), 2),
                "resco_delay_std_s": round(float(resco_delays.std(ddof=1)), 2) if len(delays) > 1 else 0.0,
                "throughput_veh": round(float(np.mean([r["throughput_veh"] for r in results])), 1),
                "safety_violations": int(sum(r["safety_violations"] for r in results)),
                "teleports": int(sum(r["teleports"] for r in results)),
                "emergency_braking": int(sum(r["emergency_braking"] for r in results)),
            }
    return {"seeds": list(seeds), "controllers": list(controllers), "detectors": detectors,
            "min_all_red_s": min_all_red_s, "sumo_version": sumo_version, "scenarios": summary,
            "machine": _machine()}


def layouts(configs: dict[str, Path], n_layouts: int, seed: int, workers: int | None = None,
            end_s: float | None = None, progress: Callable[[float], Callable[[float], None]] | None = None) -> dict:
    """citybrain on `n_layouts` random sparse detector layouts (detectors.sparse_layout,
    layout seeds 0..n-1) per scenario, against the city's own programs (`fixed`), at
    one SUMO seed: all-vehicle delay, and each layout's ratio to `fixed`."""
    jobs, keys = [], []
    total_s = 0.0
    for name, config in configs.items():
        begin, end = load_scenario(config).window(None, end_s)
        jobs.append((str(config), "fixed", RunOptions(seed=seed, end_s=end)))
        keys.append((name, None))
        for layout in range(n_layouts):
            jobs.append((str(config), "citybrain", RunOptions(seed=seed, end_s=end, detectors="sparse",
                                                              layout_seed=layout)))
            keys.append((name, layout))
        total_s += (end - begin) * (n_layouts + 1)
    results = simulate_in_processes(jobs, workers, progress(total_s) if progress else None)
    summary: dict[str, dict] = {}
    for (name, layout), result in zip(keys, results):
        entry = summary.setdefault(name, {"layouts": []})
        if layout is None:
            entry["fixed_resco_delay_s"] = result["resco_delay_s"]
            entry["fixed_arrived"] = result["throughput_veh"]
        else:
            share = result["observed_lane_share"] or {}
            entry["layouts"].append({"layout_seed": layout, "resco_delay_s": result["resco_delay_s"],
                                     "arrived": result["throughput_veh"], "teleports": result["teleports"],
                                     "safety_violations": result["safety_violations"],
                                     "mean_observed_share": round(float(np.mean(list(share.values()) or [0.0])), 3),
                                     "signals_on_plan": result["signals_on_plan"]})
    for entry in summary.values():
        ratios = [x["resco_delay_s"] / entry["fixed_resco_delay_s"] for x in entry["layouts"]]
        entry["worst_ratio"] = round(max(ratios), 3)
        entry["median_ratio"] = round(float(np.median(ratios)), 3)
        entry["within_5pct"] = sum(r <= 1.05 for r in ratios)
    return {"seed": seed, "layouts": n_layouts, "sumo_version": sumo_versions(results), "scenarios": summary,
            "machine": _machine()}


def layouts_markdown(report: dict) -> str:
    lines = [f"citybrain on {report['layouts']} random sparse loop layouts (30-100% of approach lanes, one loop "
             f"each, 0-300 m upstream) against the city's own programs (`fixed`), SUMO {report['sumo_version']}, "
             f"seed {report['seed']}; all-vehicle delay, s.", "",
             "| scenario | fixed | citybrain median | citybrain worst | worst / fixed | layouts within 5% |",
             "|---|---|---|---|---|---|"]
    for name, entry in report["scenarios"].items():
        delays = [x["resco_delay_s"] for x in entry["layouts"]]
        lines.append(f"| {name} | {entry['fixed_resco_delay_s']:.1f} | {float(np.median(delays)):.1f} | "
                     f"{max(delays):.1f} | {entry['worst_ratio']:.2f} | {entry['within_5pct']} of "
                     f"{len(delays)} |")
    return "\n".join(lines) + "\n"


# -- emergency preemption -----------------------------------------------------

def preemption_planning(route_signals: int = 30, repeat: int = 2000, cache: Path = DEFAULT_CACHE) -> dict:
    """Cost of planning one emergency vehicle's green wave along a route through
    `route_signals` signals (a corner-to-corner route on a generated grid), every
    signal within the planning horizon. `first_us`: its first period (route
    placed, from a destination, on the routing graph); then the steady
    per-period cost."""
    side = route_signals // 2 + 4
    _, network = cached_network(side * side, cache)
    route = crossing_routes(network, 1, seed=0)[0]
    timing = SignalTiming()
    engine = Engine(network, make_controller("citybrain", network), timing, preemption=PreemptionConfig())
    zeros = np.zeros(network.n_lanes)
    engine.step(DetectorFrame(0.0, zeros, zeros, zeros))
    everything = PreemptionConfig(horizon_s=1e9)
    requested = np.full(network.n_signals, -1, dtype=np.int32)
    firsts, steady = [], []
    for trial in range(max(repeat // 100, 3)):
        planner = Preemption(network, timing, everything)
        vehicle = EmergencyVehicle("bench", route[0], 0.0, 13.9, (), route[-1], 1, 0.0)
        frame = DetectorFrame(0.0, zeros, zeros, zeros, (vehicle,))
        t0 = time.perf_counter_ns()
        planner.plan(frame, engine.safety, requested)
        firsts.append(time.perf_counter_ns() - t0)
        for _ in range(100 if trial else 10):   # the first trial warms up
            t0 = time.perf_counter_ns()
            planner.plan(frame, engine.safety, requested)
            steady.append(time.perf_counter_ns() - t0)
    signals = len(planner.requests)
    firsts_us, steady_us = np.array(firsts[1:]) / 1e3, np.array(steady[10:]) / 1e3
    result = {"route_signals": signals, "route_edges": len(route),
              "first_p50_us": round(float(np.percentile(firsts_us, 50)), 1),
              "p50_us": round(float(np.percentile(steady_us, 50)), 1),
              "p99_us": round(float(np.percentile(steady_us, 99)), 1),
              "control_period_us": timing.control_period_s * 1e6}
    print(f"preemption planning, one vehicle, {signals}-signal route: first period {result['first_p50_us']:.0f} us "
          f"(routing from a destination), then p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us "
          f"per period")
    return result


def emergency(configs: dict[str, Path], seeds: tuple[int, ...] = (42,), workers: int | None = None,
              end_s: float | None = None, min_all_red_s: float = 0.0,
              progress: Callable[[float], Callable[[float], None]] | None = None) -> dict:
    """The citybrain controller on each emergency scenario and seed, with and
    without preemption; figures are means over seeds (runs in `runs`).
    `min_all_red_s`: SignalTiming.min_all_red_s."""
    jobs, keys, total_s = [], [], 0.0
    for name, config in configs.items():
        begin, end = load_scenario(config).window(None, end_s)
        for seed in seeds:
            for label in ("off", "on"):
                options = RunOptions(seed=seed, end_s=end, preemption=PreemptionConfig(enabled=label == "on"),
                                     timing=SignalTiming(min_all_red_s=min_all_red_s))
                jobs.append((str(config), "citybrain", options))
                keys.append((name, label))
                total_s += end - begin
    results = simulate_in_processes(jobs, workers, progress(total_s) if progress else None)
    fields = ("ev_count", "ev_mean_delay_s", "ev_mean_stops", "mean_delay_s", "safety_violations",
              "emergency_braking", "teleports")
    runs: dict[str, dict[str, list[dict]]] = {name: {"off": [], "on": []} for name in configs}
    for (name, label), (_, _, options), r in zip(keys, jobs, results):
        runs[name][label].append({"seed": options.seed, **{k: r[k] for k in fields},
                                  "signals_passed": r["emergency"]["signals_passed"],
                                  "not_green": r["emergency"]["not_green"],
                                  "preemption": r["emergency"]["preemption"]})
    summary = {}
    for name, by_label in runs.items():
        summary[name] = {}
        for label, per_seed in by_label.items():
            summary[name][label] = {
                "ev_count": per_seed[0]["ev_count"],
                **{k: _mean([r[k] for r in per_seed]) for k in ("ev_mean_delay_s", "ev_mean_stops", "mean_delay_s")},
                **{k: sum(r[k] for r in per_seed) for k in ("safety_violations", "emergency_braking", "teleports",
                                                              "signals_passed", "not_green")},
            }
    return {"seeds": list(seeds), "min_all_red_s": min_all_red_s, "scenarios": summary, "runs": runs,
            "machine": _machine()}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 2) if values else None


def emergency_markdown(report: dict) -> str:
    def change(off, on) -> str:
        return "–" if not off or on is None else f"{100 * (on - off) / off:+.1f}%"

    def fmt(value, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    seeds = report["seeds"]
    lines = [f"citybrain with and without emergency preemption, mean over SUMO seeds {', '.join(map(str, seeds))}. "
             "EV: emergency vehicles (no bluelight device); others: every other vehicle; not green: signal "
             "passes where the EV's link was not green within its stopping distance; counts summed over seeds"
             + (f"; all-red at least {report['min_all_red_s']:g} s." if report.get("min_all_red_s") else "."), "",
             "| scenario | EVs | EV delay s, off → on | change | EV stops, off → on | not green, off → on "
             "| others' delay s, off → on | change | teleports, off → on | violations | emergency braking |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in report["scenarios"].items():
        off, on = runs["off"], runs["on"]
        lines.append(
            f"| {name} | {on['ev_count']} | {fmt(off['ev_mean_delay_s'], '.1f')} → {fmt(on['ev_mean_delay_s'], '.1f')}"
            f" | {change(off['ev_mean_delay_s'], on['ev_mean_delay_s'])}"
            f" | {fmt(off['ev_mean_stops'], '.2f')} → {fmt(on['ev_mean_stops'], '.2f')}"
            f" | {off['not_green']}/{off['signals_passed']} → {on['not_green']}/{on['signals_passed']}"
            f" | {off['mean_delay_s']:.1f} → {on['mean_delay_s']:.1f} | {change(off['mean_delay_s'], on['mean_delay_s'])}"
            f" | {off['teleports']} → {on['teleports']} | {off['safety_violations'] + on['safety_violations']}"
            f" | {off['emergency_braking']} → {on['emergency_braking']} |")
    return "\n".join(lines) + "\n"


def published_resco(readme: Path) -> dict[str, dict[str, str]]:
    """Rows of the 'Published average delay' table of ../shared/networks/README.md, by map then column."""
    rows, header = {}, None
    if not readme.exists():
        return rows
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["map", "Fixed"]:
            header = cells
        elif header and len(cells) == len(header) and cells[0] in RESCO_MAPS:
            rows[cells[0]] = dict(zip(header, cells))
    return rows


def scenarios_markdown(report: dict, published: dict[str, dict[str, str]]) -> str:
    """Two tables: mean delay of arrived vehicles, and RESCO's own measure (every vehicle
    loaded, arrived or not), each beside RESCO's published figures."""
    seeds = ", ".join(map(str, report["seeds"]))
    detectors = report.get("detectors", "lanes")
    if detectors == "auto":
        detectors = "auto (exact lane counts where a scenario defines no induction loops)"
    if report.get("min_all_red_s"):
        detectors += f"; our controllers' all-red at least {report['min_all_red_s']:g} s"
    sumo = f"SUMO {report['sumo_version']}" if report.get("sumo_version") else "SUMO"
    arrived = _delay_table(report, published, "mean_delay_s", "delay_std_s",
                           f"Mean delay of arrived vehicles, s (mean ± std over seeds {seeds}), in {sumo} (RESCO's "
                           f"published figures: SUMO 1.9); our controllers "
                           f"see detectors: {detectors}; violations summed over all runs of our controllers; emergency "
                           f"brakings (SUMO's warnings) summed over all runs of each controller, in column order.")
    every = _delay_table(report, published, "resco_delay_s", "resco_delay_std_s",
                         f"RESCO's measure, s: the same over every vehicle loaded, arrived or not, counted up to the "
                         f"end (RESCO's utils/readXML.py); seeds {seeds}, detectors: {detectors}.", brakings=False)
    return arrived + "\n" + every


def _delay_table(report: dict, published: dict[str, dict[str, str]], key: str, std_key: str, title: str,
                 brakings: bool = True) -> str:
    controllers = report["controllers"]
    columns = ["RESCO Fixed", "RESCO MaxPressure", "RESCO best"]
    extra = " emergency brakings |" if brakings else ""
    lines = [title, "",
             "| scenario | " + " | ".join(controllers) + " | " + " | ".join(columns) + " | violations |" + extra,
             "|---" * (len(controllers) + len(columns) + 2 + brakings) + "|"]
    for name, by_controller in report["scenarios"].items():
        cells = []
        for c in controllers:
            r = by_controller[c]
            cells.append(f"{r[key]:.1f} ± {r[std_key]:.1f}" if len(report["seeds"]) > 1 else f"{r[key]:.1f}")
        pub = published.get(name, {})
        cells += [pub.get(k.removeprefix("RESCO "), "–") for k in columns]
        violations = sum(r["safety_violations"] for c, r in by_controller.items() if c not in ("fixed", "actuated"))
        row = f"| {name} | " + " | ".join(cells) + f" | {violations} |"
        if brakings:   # older reports lack the count
            row += " " + " / ".join(str(by_controller[c].get("emergency_braking", "–")) for c in controllers) + " |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def _machine() -> dict:
    import platform
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown"


def write_json(data: dict, path: Path | None) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")

