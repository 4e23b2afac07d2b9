"""Run controllers on a scenario in SUMO: `simulate` one, `compare` several in parallel."""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .config import ControllerConfig, PreemptionConfig, SignalTiming, SupervisorConfig
from .controllers import CONTROLLER_NAMES, NATIVE_PROGRAMS, Controller, SignalView, make_controller
from .engine import Engine, SignalCommands
from .frame import DetectorFrame
from .gateway import GatewayOptions, WireControl
from .live import LiveView
from .metrics import read_tripinfo
from .network import Network, load_scenario_network
from .preemption import Preemption
from .safety import SafetyMonitor
from .scenario import Scenario, load_scenario
from .sumo_adapter import SumoOptions, SumoSimulation, count_emergency_braking, summarize_log

__all__ = ["RunOptions", "simulate", "simulate_in_processes", "run_gateway", "compare", "build_report", "sumo_versions",
           "DEFAULT_COMPARE"]

DEFAULT_COMPARE = ("fixed", "actuated", "maxpressure", "citybrain")
Progress = Callable[[float], None]   # called with simulated seconds just completed
SERIES_EVERY_S = 60.0                # how often a run samples its time series


class Control(Protocol):
    """Who decides the signals: the in-process `Engine`, or `WireControl` (the engine over the wire)."""

    preempting: np.ndarray   # signals whose minimum green emergency preemption may cut this period
    signals: SignalView      # what each signal shows, in stage-machine terms
    preemption: Preemption | None

    def step(self, frame: DetectorFrame) -> SignalCommands: ...


@dataclass(frozen=True)
class RunOptions:
    backend: str = "libsumo"
    seed: int = 42
    begin_s: float | None = None
    end_s: float | None = None
    timing: SignalTiming = field(default_factory=SignalTiming)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    pace: float | None = None     # simulated s per wall s; None: as fast as possible
    detectors: str = "auto"       # what controllers see: detectors.DETECTOR_MODES
    layout_seed: int = 0          # detectors "sparse": which random layout
    sumo_home: str | None = None  # another SUMO installation, run through TraCI (backend "traci")
    # Where a run keeps SUMO's log and every output the scenario's files ask for
    # (OUTPUT_DIR/SCENARIO-CONTROLLER-seedN); None: a temporary folder, deleted after.
    output_dir: str | None = None


def simulate(scenario_path: str | Path, controller_name: str, options: RunOptions = RunOptions(),
             progress: Progress | None = None, live: LiveView | None = None) -> dict:
    """Run one controller over the scenario; returns its metrics as a dict.
    With `live`, the run's state is offered to it every period (the dashboard)."""
    if controller_name not in CONTROLLER_NAMES:
        raise ValueError(f"unknown controller {controller_name!r}; choose from {', '.join(CONTROLLER_NAMES)}")
    native = NATIVE_PROGRAMS.get(controller_name)
    if native:
        scenario = load_scenario(scenario_path)
        return _run_sumo(scenario, load_scenario_network(scenario), None, native, options, progress, live)
    return simulate_controller(scenario_path, lambda net: make_controller(controller_name, net, options.controller),
                               options, progress, live)


def simulate_controller(scenario_path: str | Path, make: Callable[[Network], Controller],
                        options: RunOptions = RunOptions(), progress: Progress | None = None,
                        live: LiveView | None = None) -> dict:
    """Run the controller `make(network)` builds over the scenario, behind our engine
    (safety layer, plan fallback, supervisor, preemption)."""
    scenario = load_scenario(scenario_path)
    network = load_scenario_network(scenario)
    timed = network.with_min_all_red(options.timing.min_all_red_s)
    # SUMO runs each signal's program as the city wrote it: its own controller.
    engine = Engine(timed, make(timed), options.timing, preemption=options.preemption,
                    supervisor=options.supervisor, own_controllers=True)
    return _run_sumo(scenario, network, engine, None, options, progress, live)


def run_gateway(scenario_path: str | Path, options: RunOptions, gateway: GatewayOptions,
                progress: Progress | None = None, live: LiveView | None = None) -> tuple[str, dict]:
    """SUMO as a virtual field behind a gateway: frames go to the engine at
    `gateway.engine_address`, its commands come back. Returns the engine's
    controller name (as it introduced itself) and the same metrics as `simulate`,
    plus the gateway's own counts."""
    scenario = load_scenario(scenario_path)
    network = load_scenario_network(scenario)
    # The local fallback plan keeps the same clearance as the engine (`serve --min-all-red`).
    control = WireControl(network.with_min_all_red(options.timing.min_all_red_s), options.timing, gateway)
    try:
        control.connect()
        result = _run_sumo(scenario, network, control, None, options, progress, live)
    finally:
        control.close()
    result["gateway"] = control.report()
    return control.controller or "unknown", result


def _run_sumo(scenario: Scenario, network: Network, control: Control | None, native: str | None,
              options: RunOptions, progress: Progress | None, live: LiveView | None = None) -> dict:
    """The loop shared by every way of running SUMO: read a frame, let `control`
    (in-process engine or the wire) decide, apply, advance, audit what SUMO showed."""
    period_s = options.timing.control_period_s
    monitor = SafetyMonitor(network, options.timing.min_green_s, period_s, options.timing.preemption_min_green_s)
    sumo_options = SumoOptions(options.backend, options.seed, options.begin_s, options.end_s, native,
                               options.detectors, period_s, options.sumo_home, options.layout_seed,
                               safe_programs=isinstance(control, Engine))
    timing = {"sumo_step_s": 0.0, "sumo_io_s": 0.0, "engine_s": 0.0, "audit_s": 0.0}
    started = time.perf_counter()
    pacer = _Pacer(options.pace)
    workdir = None
    if options.output_dir:
        name = "native" if native else getattr(getattr(control, "controller", None), "name", "wire")
        workdir = Path(options.output_dir) / f"{scenario.name}-{native or name}-seed{options.seed}"
        workdir.mkdir(parents=True, exist_ok=True)
    sim = SumoSimulation(scenario, network, sumo_options, workdir)
    figures = _LiveFigures() if live else None
    series = _Series()
    observed_share = None
    if isinstance(control, Engine):
        observed_share = control.observe_lanes(sim.observed_lanes, sim.modelled_lanes)
    try:
        with sim:
            while sim.running():
                series.sample(sim)
                pacer.wait(sim.time_s)
                t0 = time.perf_counter()
                if control is not None:
                    frame = sim.read_frame()
                    t1 = time.perf_counter()
                    commands = control.step(frame)
                    t2 = time.perf_counter()
                    sim.apply(commands)
                    timing["engine_s"] += t2 - t1
                    timing["sumo_io_s"] += time.perf_counter() - t2 + t1 - t0
                    if live:
                        _offer(live, figures, sim, frame, control, t2 - t1)
                elif live:
                    _offer(live, figures, sim, sim.read_frame(), None, 0.0)
                t3 = time.perf_counter()
                sim.advance(period_s)
                t4 = time.perf_counter()
                shown = sim.read_signal_states()
                monitor.observe(shown, None if control is None else control.preempting)
                if isinstance(control, Engine):
                    control.observe_shown(shown, period_s)
                timing["sumo_step_s"] += t4 - t3
                timing["audit_s"] += time.perf_counter() - t4
                if progress:
                    progress(period_s)
            series.sample(sim, final=True)
        metrics, emergency = read_tripinfo(sim.tripinfo_path, sim.loaded_veh, frozenset(sim.emergency_ids))
        emergency_braking = count_emergency_braking(sim.log_path)
        sumo_messages = summarize_log(sim.log_path)
    finally:
        sim.cleanup()
    report = monitor.report
    preemption = getattr(control, "preemption", None)
    return {
        **metrics.as_dict(),
        **emergency.as_dict(),
        "teleports": sim.teleports,
        "sumo_version": sim.sumo_version,
        "emergency_braking": emergency_braking,
        # SUMO's warnings and errors by kind (its log is kept with --output-dir).
        "sumo_messages": sumo_messages,
        "safety_violations": report.violations,
        "safety": report.as_dict(),
        # Emergency vehicles: what they met at each signal, and what preemption did.
        "emergency": {**sim.emergency_audit.as_dict(),
                      "preemption": None if preemption is None else preemption.counts.as_dict()},
        "signals": network.n_signals,
        # Program phases that broke our safety rules, as repaired (Network.repairs).
        "program_repairs": list(network.repairs),
        # Per signal, the share of its approach lanes the detectors observe, and how many
        # signals run the program's plan for what they cannot see (Engine.observe_lanes).
        "observed_lane_share": None if observed_share is None else dict(zip(
            network.signal_ids, np.round(observed_share, 3).tolist())),
        "signals_on_plan": None if observed_share is None else int(control.on_plan.sum()),
        # ... and how many are left to their own actuated controller (never commanded).
        "signals_local": None if observed_share is None else int(control.local.sum()),
        # Signals handed back to their plan where adaptive control visibly lost (citybrain.supervisor).
        "supervisor": None if getattr(control, "supervisor", None) is None else control.supervisor.report(),
        # The mode this run used ("auto" resolved; "native": SUMO's own programs and detectors).
        "detectors": sim.detectors,
        "simulated_s": sim.end_s - sim.begin_s,
        "wall_s": round(time.perf_counter() - started, 3),
        "engine_s": round(timing["engine_s"], 3),
        # Where the wall time went: SUMO stepping, SUMO API reads/writes (lane counts,
        # commands), the engine's decision (or the wire round trip), the safety audit.
        "timing": {k: round(v, 3) for k, v in timing.items()},
        # Every SERIES_EVERY_S simulated seconds and at the end: vehicles on the network,
        # halted on the signals' lanes (mean over the interval), arrived so far, and
        # their mean delay so far.
        "series": series.as_dict(),
    }


def _seen_by_ours(results: dict[str, dict]) -> str | None:
    modes = sorted({r["detectors"] for r in results.values() if r.get("detectors", "native") != "native"})
    return ", ".join(modes) or None


class _Series:
    """The run over time: a row every SERIES_EVERY_S simulated seconds. Queued
    vehicles are the mean of a look every QUEUE_LOOK_EVERY_S within the row's
    interval, so a signal cycle does not alias with the sampling."""

    QUEUE_LOOK_EVERY_S = 10.0

    def __init__(self):
        self.rows: list[tuple[float, int, float, int, float]] = []
        self._looks: list[int] = []
        self._next_look_s: float | None = None

    def sample(self, sim: SumoSimulation, final: bool = False) -> None:
        now = sim.time_s
        if self._next_look_s is None or now >= self._next_look_s - 1e-9 or final:
            self._looks.append(sim.queued_veh())
            self._next_look_s = now + self.QUEUE_LOOK_EVERY_S
        if self.rows and now < self.rows[-1][0] + SERIES_EVERY_S - 1e-9 and not (final and now > self.rows[-1][0]):
            return
        queued = round(sum(self._looks) / len(self._looks), 1)
        self._looks = []
        delay_s = sim.mean_delay_so_far_s()
        self.rows.append((now, sim.running_veh(), queued, sim.arrived_veh, None if delay_s is None else round(delay_s, 2)))

    def as_dict(self) -> dict[str, list]:
        keys = ("time_s", "running_veh", "queued_veh", "arrived_veh", "mean_delay_so_far_s")
        return {key: [row[i] for row in self.rows] for i, key in enumerate(keys)}


class _Pacer:
    """Holds a run to `pace` simulated seconds per wall second (for watching it)."""

    def __init__(self, pace: float | None):
        self.pace = pace
        self.origin: tuple[float, float] | None = None

    def wait(self, time_s: float) -> None:
        if not self.pace:
            return
        if self.origin is None:
            self.origin = (time_s, time.monotonic())
        sim0, wall0 = self.origin
        delay = wall0 + (time_s - sim0) / self.pace - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _LiveFigures:
    """Running headline figures of a SUMO run for the dashboard."""

    def __init__(self):
        self.arrivals: list[tuple[float, int]] = []

    def record(self, time_s: float, arrived_veh: int) -> None:
        self.arrivals.append((time_s, arrived_veh))
        while self.arrivals[0][0] < time_s - 60.0:
            self.arrivals.pop(0)

    def kpis(self, sim: SumoSimulation, frame: DetectorFrame, decision_s: float) -> dict[str, float]:
        (t_first, first), (t_last, last) = self.arrivals[0], self.arrivals[-1]
        per_min = 60.0 * (last - first) / (t_last - t_first) if t_last > t_first else 0.0
        return {"queued_veh": float(frame.halting.sum()), "mean_delay_s": sim.mean_delay_so_far_s(),
                "arrived_per_min": per_min, "decision_ms": decision_s * 1e3}


def _offer(live: LiveView, figures: _LiveFigures, sim: SumoSimulation, frame: DetectorFrame,
           control: Control | None, decision_s: float) -> None:
    figures.record(frame.time_s, sim.arrived_veh)
    if not live.due():
        return
    kpis = figures.kpis(sim, frame, decision_s)
    if control is None:  # SUMO's own programs: no stage machine of ours to show
        empty = np.zeros(0, dtype=np.int32)
        live.offer(frame.time_s, empty, empty, halting=frame.halting, emergency=frame.emergency, kpis=kpis)
        return
    preemption = control.preemption
    on_plan = control.on_plan_now() if isinstance(control, Engine) else None
    live.offer(frame.time_s, control.signals.green_phase, control.signals.stage, stale=on_plan,
               preempt=preemption.state if preemption else control.preempting.astype(np.int8),
               serving=preemption.serving if preemption else None,
               halting=frame.halting, emergency=frame.emergency, kpis=kpis)


def _simulate_in_worker(scenario_path: str, controller_name: str, options: RunOptions, queue) -> dict:
    return simulate(scenario_path, controller_name, options, queue.put)


def simulate_in_processes(jobs: list[tuple[str, str, RunOptions]], workers: int | None = None,
                          update: Callable[[float], None] | None = None) -> list[dict]:
    """`simulate` each (scenario, controller, options) in a process of its own
    (libsumo allows one simulation per process), `workers` at a time (default:
    one per core); results in the order of `jobs`. `update` gets simulated
    seconds as the runs progress."""
    context = multiprocessing.get_context("spawn")
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    with context.Manager() as manager:
        queue = manager.Queue()
        with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
            futures = [pool.submit(_simulate_in_worker, str(path), name, options, queue)
                       for path, name, options in jobs]
            while True:
                while not queue.empty():
                    seconds = queue.get()
                    if update:
                        update(seconds)
                if all(f.done() for f in futures):
                    break
                time.sleep(0.2)
            return [f.result() for f in futures]


def compare(scenario_path: str | Path, controllers: tuple[str, ...] = DEFAULT_COMPARE,
            options: RunOptions = RunOptions(), workers: int | None = None,
            progress_total: Callable[[float], Callable[[float], None]] | None = None) -> dict:
    """Run each controller in its own process, as many at a time as there are cores.
    Returns the report dict."""
    unknown = [c for c in controllers if c not in CONTROLLER_NAMES]
    if unknown:
        raise ValueError(f"unknown controller(s) {', '.join(unknown)}; choose from {', '.join(CONTROLLER_NAMES)}")
    scenario = load_scenario(scenario_path)
    load_scenario_network(scenario)  # fail fast, in this process, on an unusable net
    begin, end = scenario.window(options.begin_s, options.end_s)
    options = replace(options, begin_s=begin, end_s=end)
    update = progress_total((end - begin) * len(controllers)) if progress_total else None
    results = simulate_in_processes([(str(scenario_path), name, options) for name in controllers], workers, update)
    return build_report(scenario, options, dict(zip(controllers, results)))


def sumo_versions(results) -> str:
    """The SUMO version(s) a set of run results came from, e.g. "1.28.0"."""
    return ", ".join(sorted({r["sumo_version"] for r in results}))


def build_report(scenario: Scenario, options: RunOptions, results: dict[str, dict]) -> dict:
    """The report `simulate` and `compare` print and write as JSON."""
    begin, end = scenario.window(options.begin_s, options.end_s)
    return {
        "scenario": scenario.name,
        "config": str(scenario.config),
        "begin_s": begin,
        "end_s": end,
        "seed": options.seed,
        "backend": options.backend,
        "sumo_version": sumo_versions(results.values()),
        # What our controllers saw ("auto" resolved); as asked when only SUMO's own programs ran.
        "detectors": _seen_by_ours(results) or options.detectors,
        "controllers": results,
    }
