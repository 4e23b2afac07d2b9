"""`citybrain` command line: simulate and compare controllers on SUMO scenarios,
serve the engine to field gateways, and run SUMO as a gateway."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from .config import PreemptionConfig, SignalTiming, SupervisorConfig
from .controllers import CONTROLLER_NAMES, NATIVE_PROGRAMS
from .detectors import DETECTOR_MODES
from .field import CLOCKS, FieldConfig
from .gateway import GatewayOptions, replay
from .network import NetworkError, load_network, load_scenario_network
from .plots import comparison_chart, scenarios_chart
from .run import DEFAULT_COMPARE, RunOptions, build_report, compare, run_gateway, simulate
from .scenario import ScenarioError, load_scenario
from .sumo_adapter import BACKENDS, SimulationError

__all__ = ["main"]

_COLUMNS = (
    # The headline: delay over every vehicle loaded, those still queued or not let in included.
    ("resco_delay_s", "all-veh delay s", "{:.1f}"),
    ("mean_delay_s", "arrived delay s", "{:.1f}"),
    ("mean_travel_time_s", "travel s", "{:.1f}"),
    ("mean_waiting_s", "waiting s", "{:.1f}"),
    ("mean_stops", "stops", "{:.2f}"),
    ("throughput_veh", "arrived", "{:d}"),
    ("unfinished_veh", "unfinished", "{:d}"),
    ("teleports", "teleports", "{:d}"),
    ("safety_violations", "violations", "{:d}"),
    ("wall_s", "wall s", "{:.1f}"),
)


def format_table(report: dict) -> str:
    header = ["controller", *(title for _, title, _ in _COLUMNS)]
    rows = [[name, *("-" if result[key] is None else fmt.format(result[key]) for key, _, fmt in _COLUMNS)]
            for name, result in report["controllers"].items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    title = (f"{report['scenario']}: {report['end_s'] - report['begin_s']:g} s simulated "
             f"({report['begin_s']:g}-{report['end_s']:g}), seed {report['seed']}, SUMO {report['sumo_version']}, "
             f"{report['backend']}, "
             f"detectors: {report['detectors']}")
    return "\n".join([title, line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _progress_bar(description: str):
    """A tqdm bar on stderr, shown only once a run has taken a couple of seconds."""
    from tqdm import tqdm

    def start(total_s: float):
        bar = tqdm(total=total_s, desc=description, unit="sim s", delay=2.0, file=sys.stderr,
                   dynamic_ncols=True, disable=None)

        def update(seconds: float) -> None:
            bar.update(seconds)
            if bar.n >= total_s:
                bar.close()
        return update
    return start


def _options(args) -> RunOptions:
    preemption = PreemptionConfig(enabled=not getattr(args, "no_preemption", False))
    supervisor = SupervisorConfig(enabled=not getattr(args, "no_supervisor", False))
    backend = args.backend or ("traci" if args.sumo_home else "libsumo")
    return RunOptions(backend=backend, seed=args.seed, begin_s=args.begin, end_s=args.end,
                      preemption=preemption, supervisor=supervisor, pace=getattr(args, "pace", None),
                      detectors=getattr(args, "detectors", "auto"), layout_seed=getattr(args, "layout_seed", 0),
                      timing=SignalTiming(min_all_red_s=args.min_all_red), sumo_home=args.sumo_home,
                      output_dir=getattr(args, "output_dir", None))


def _write_json(report: dict, path: str | None) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)


class _Dashboard:
    """`--dashboard PORT`: the live view and its web server for one command's run."""

    def __init__(self, args, network, title: str):
        self.live = self.server = None
        if args.dashboard is None:
            return
        from .dashboard import DashboardServer
        from .live import LiveView
        self.live = LiveView(network)
        self.server = DashboardServer(self.live, args.dashboard_address, args.dashboard, title)
        print(f"citybrain: dashboard {self.server.url}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.server:
            self.server.close()


def _cmd_simulate(args) -> None:
    options = _options(args)
    scenario = load_scenario(args.scenario)
    begin, end = scenario.window(args.begin, args.end)
    dashboard = _Dashboard(args, load_scenario_network(scenario), f"{scenario.name} / {args.controller}")
    update = _progress_bar(f"{scenario.name}/{args.controller}")(end - begin)
    try:
        result = simulate(args.scenario, args.controller, options, update, dashboard.live)
    finally:
        dashboard.close()
    report = build_report(scenario, options, {args.controller: result})
    print(format_table(report))
    _say_repairs(report)
    _write_json(report, args.json)
    _write_plot(report, args.plot)


def _say_repairs(report: dict) -> None:
    """One line where the city's programs broke our safety rules (ours ran them repaired)."""
    repairs = next((r["program_repairs"] for r in report["controllers"].values() if r.get("program_repairs")), None)
    if repairs:
        print(f"citybrain: {report['scenario']}: {len(repairs)} program phases repaired, e.g. {repairs[0]} "
              f"(all in the JSON's program_repairs)", file=sys.stderr)


def _cmd_compare(args) -> None:
    controllers = tuple(c.strip() for c in args.controllers.split(",") if c.strip())
    scenario = load_scenario(args.scenario)
    report = compare(args.scenario, controllers, _options(args), args.workers,
                     _progress_bar(f"{scenario.name} x{len(controllers)}"))
    print(format_table(report))
    _say_repairs(report)
    _write_json(report, args.json)
    _write_plot(report, args.plot)


def _write_plot(report: dict, path: str | None) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        comparison_chart(report, out)
        print(f"wrote {out}", file=sys.stderr)


def _cmd_serve(args) -> None:
    from .server import ServeOptions, serve
    path = Path(args.network)
    network = load_network(path) if path.name.endswith(".net.xml") else load_scenario_network(load_scenario(path))
    field = FieldConfig(period_s=args.period, clock=args.clock, stale_after_s=args.stale_after,
                        max_message_bytes=int(args.max_message_mb * 2**20), max_messages_per_s=args.max_rate)
    options = ServeOptions(bind=args.bind, controller=args.controller, metrics_address=args.metrics_address,
                           metrics_port=None if args.metrics_port < 0 else args.metrics_port, field=field,
                           preemption=PreemptionConfig(enabled=not args.no_preemption),
                           supervisor=SupervisorConfig(enabled=not args.no_supervisor),
                           dashboard_address=args.dashboard_address, dashboard_port=args.dashboard,
                           min_all_red_s=args.min_all_red)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def ready(endpoint: str, metrics_port: int | None, dashboard_url: str | None) -> None:
        where = f"http://{args.metrics_address}:{metrics_port}/metrics" if metrics_port is not None else "off"
        print(f"citybrain serve: {network.n_signals} signals, controller {args.controller}, {args.clock} clock, "
              f"period {args.period:g} s; listening on {endpoint}; metrics {where}"
              + (f"; dashboard {dashboard_url}" if dashboard_url else ""), file=sys.stderr, flush=True)
        if network.repairs:
            print(f"citybrain serve: {len(network.repairs)} program phases repaired, e.g. {network.repairs[0]}",
                  file=sys.stderr, flush=True)

    serve(network, options, stop, ready)
    print("citybrain serve: stopped", file=sys.stderr, flush=True)


def _cmd_gateway(args) -> None:
    if args.replay:
        result = replay(Path(args.replay), args.engine, (args.engine_timeout or 1.0) * 5)
        print(json.dumps(result, indent=2))
        _write_json(result, args.json)
        if result["mismatches"] or result["missing"]:
            raise ValueError(f"replay diverged from the recording: {result['mismatches']} mismatched, "
                             f"{result['missing']} missing commands")
        return
    if not args.scenario:
        raise ValueError("gateway needs a SCENARIO (or --replay PATH)")
    options = _options(args)
    gateway = GatewayOptions(engine_address=args.engine, name=args.name, engine_timeout_s=args.engine_timeout,
                             connect_timeout_s=args.connect_timeout,
                             record_path=Path(args.record) if args.record else None)
    scenario = load_scenario(args.scenario)
    begin, end = scenario.window(args.begin, args.end)
    dashboard = _Dashboard(args, load_scenario_network(scenario), f"{scenario.name} / gateway")
    update = _progress_bar(f"{scenario.name}/wire")(end - begin)
    try:
        controller, result = run_gateway(args.scenario, options, gateway, update, dashboard.live)
    finally:
        dashboard.close()
    report = build_report(scenario, options, {controller: result})
    print(format_table(report))
    g = result["gateway"]
    print(f"gateway: {g['engine_steps']} engine steps, {g['local_steps']} local-plan steps, engine lost "
          f"{g['engine_lost']}x, {g['guard_rejections']} commands refused by the guard"
          + (f", frame->command p50 {g['frame_to_command_p50_us']:.0f} us p99 {g['frame_to_command_p99_us']:.0f} us"
             if "frame_to_command_p50_us" in g else ""))
    _write_json(report, args.json)
    _write_plot(report, args.plot)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--sizes wants comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--sizes wants positive integers, got {text!r}")
    return sizes


def _cmd_bench(args) -> None:
    from . import bench
    cache = Path(args.cache)
    if args.bench == "latency":
        report = bench.latency(_sizes(args.sizes), args.repeat, max(20, args.repeat // 10), cache,
                               controller=args.controller)
    elif args.bench == "wire":
        report = bench.wire(_sizes(args.sizes), args.rate, args.seconds, cache, controller=args.controller)
    elif args.bench == "scale":
        report = bench.scale(_sizes(args.sizes), args.seconds, cache, controller=args.controller)
    elif args.bench == "emergency":
        report = _bench_emergency(args, bench, cache)
    else:
        report = _bench_scenarios(args, bench)
    _write_json(report, args.json)


def _bench_scenarios(args, bench) -> dict:
    configs = {}
    for path in args.scenario or []:
        configs[load_scenario(path).name] = Path(path)
    if not args.scenario and args.set in ("cities", "all"):
        cities = Path(args.cities)
        if not cities.is_dir():
            raise ValueError(f"cities folder {cities} not found (--cities PATH)")
        for folder in sorted(p for p in cities.iterdir() if p.is_dir() and any(p.glob("*.sumocfg"))):
            configs[folder.name] = folder
    if not args.scenario and args.set in ("resco", "all"):
        configs["grid10x10"] = Path("scenarios/grid10x10")
        resco = Path(args.resco)
        if not resco.is_dir():
            raise ValueError(f"RESCO folder {resco} not found (--resco PATH, or name scenarios with --scenario)")
        for name in bench.RESCO_MAPS:
            if (resco / name).is_dir():
                configs[name] = resco / name / f"{name}.sumocfg"
        if Path("scenarios/berlin").is_dir():      # built by `make berlin` (it names the installed SUMO's net)
            configs["berlin"] = Path("scenarios/berlin")
    controllers = tuple(c.strip() for c in args.controllers.split(",") if c.strip())
    unknown = [c for c in controllers if c not in CONTROLLER_NAMES]
    if unknown:
        raise ValueError(f"unknown controller(s) {', '.join(unknown)}; choose from {', '.join(CONTROLLER_NAMES)}")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    if args.layouts:
        return _bench_layouts(args, bench, configs, seeds[0])
    progress = _progress_bar(f"{len(configs)} scenarios x {len(controllers)} x {len(seeds)} seeds")
    report = bench.scenarios(configs, controllers, seeds, args.workers, args.end, args.detectors, args.min_all_red,
                             progress, sumo_home=args.sumo_home)
    published = bench.published_resco(Path(args.resco).parent / "README.md")
    table = bench.scenarios_markdown(report, published)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenarios.md").write_text(table)
    bench.write_json(report, out / "scenarios.json")
    scenarios_chart(report, out / "scenarios.png")
    print(f"wrote {out / 'scenarios.md'}, {out / 'scenarios.json'}, {out / 'scenarios.png'}", file=sys.stderr)
    return report


def _bench_layouts(args, bench, configs: dict[str, Path], seed: int) -> dict:
    progress = _progress_bar(f"{len(configs)} scenarios x ({args.layouts} layouts + fixed)")
    report = bench.layouts(configs, args.layouts, seed, args.workers, args.end, progress)
    table = bench.layouts_markdown(report)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layouts.md").write_text(table)
    bench.write_json(report, out / "layouts.json")
    print(f"wrote {out / 'layouts.md'}, {out / 'layouts.json'}", file=sys.stderr)
    return report


def _bench_emergency(args, bench, cache: Path) -> dict:
    report = {"planning": bench.preemption_planning(args.route_signals, args.repeat, cache)}
    paths = args.scenario if args.scenario is not None else ["scenarios/grid10x10-ev"]
    configs = {load_scenario(path).name: Path(path) for path in paths}
    if configs:
        seeds = tuple(int(x) for x in args.seeds.split(","))
        outcome = bench.emergency(configs, seeds, args.workers, args.end, args.min_all_red,
                                  _progress_bar(f"{len(configs)} scenarios x {len(seeds)} seeds, preemption off and on"))
        table = bench.emergency_markdown(outcome)
        print(table)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "emergency.md").write_text(table)
        print(f"wrote {out / 'emergency.md'}", file=sys.stderr)
        report.update(outcome)
    return report


def _cmd_add_emergency(args) -> None:
    from .emergency_demand import add_emergency_vehicles
    config = add_emergency_vehicles(args.scenario, args.out, args.count, args.seed)
    print(f"wrote {config} ({args.count} emergency vehicles)")


def _add_run_arguments(parser: argparse.ArgumentParser, scenario_required: bool = True) -> None:
    parser.add_argument("scenario", nargs=None if scenario_required else "?",
                        help="scenario folder or .sumocfg file")
    parser.add_argument("--begin", type=float, help="simulation begin, s (default: the scenario's)")
    parser.add_argument("--end", type=float, help="simulation end, s (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=42, help="SUMO random seed (default 42)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="libsumo (in-process, fast) or traci (socket) (default libsumo; traci with --sumo-home)")
    _add_sumo_home_argument(parser)
    _add_detectors_argument(parser)
    _add_all_red_argument(parser)
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    parser.add_argument("--plot", metavar="PATH", help="also chart it (queues and delay over time, final delay) "
                                                       "as a PNG at PATH")
    parser.add_argument("--pace", type=float, help="simulated s per wall s (default: as fast as possible)")
    _add_dashboard_arguments(parser)


def _add_detectors_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detectors", choices=DETECTOR_MODES, default="auto",
                        help="what our controllers see: lanes (exact lane counts), loops (stop-line and advance "
                             "induction loops placed on every approach), scenario (the scenario's own induction "
                             "loops), sparse (a random sparse layout of counting loops, see --layout-seed), "
                             "auto (scenario if it defines loops, else lanes) (default auto)")
    parser.add_argument("--layout-seed", type=int, default=0,
                        help="with --detectors sparse: which random layout (30-100%% of approach lanes, one loop "
                             "each, 0-300 m upstream) (default 0)")


def _add_sumo_home_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", metavar="DIR",
                        help="keep each run's SUMO log and every output the scenario's own files ask for in "
                             "DIR/SCENARIO-CONTROLLER-seedN (default: a temporary folder, deleted after the run)")
    parser.add_argument("--sumo-home", metavar="PATH",
                        help="run the SUMO installed at PATH (PATH/bin/sumo, through TraCI) instead of the "
                             "eclipse-sumo package's, e.g. the SUMO 1.9.2 of `make sumo-1.9` for RESCO's version")


def _add_all_red_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-all-red", type=float, default=0.0, metavar="S",
                        help="our controllers' all-red clearance is at least S seconds where a signal's program has "
                             "less (default 0: the net's own)")


def _add_dashboard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dashboard", type=int, metavar="PORT",
                        help="serve the live dashboard on this port (0 picks a free one; default off)")
    parser.add_argument("--dashboard-address", default="127.0.0.1",
                        help="address of the dashboard (default 127.0.0.1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citybrain", description="Real-time traffic-signal control, in SUMO.")
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="run one controller on a scenario")
    _add_run_arguments(sim)
    sim.add_argument("--controller", choices=CONTROLLER_NAMES, default="citybrain")
    sim.add_argument("--no-preemption", action="store_true",
                     help="run the controller without emergency-vehicle preemption")
    sim.add_argument("--no-supervisor", action="store_true",
                     help="never hand a signal back to its plan where adaptive control visibly loses (citybrain.supervisor)")
    sim.set_defaults(handler=_cmd_simulate)

    cmp = commands.add_parser("compare", help="run several controllers on a scenario, in parallel")
    _add_run_arguments(cmp)
    cmp.add_argument("--controllers", default=",".join(DEFAULT_COMPARE),
                     help=f"comma-separated, from {', '.join(CONTROLLER_NAMES)} (default: all)")
    cmp.add_argument("--workers", type=int, help="parallel simulations (default: one per core)")
    cmp.add_argument("--no-preemption", action="store_true",
                     help="run our controllers without emergency-vehicle preemption")
    cmp.add_argument("--no-supervisor", action="store_true",
                     help="never hand a signal back to its plan where adaptive control visibly loses (citybrain.supervisor)")
    cmp.set_defaults(handler=_cmd_compare)

    adaptive = [c for c in CONTROLLER_NAMES if c not in NATIVE_PROGRAMS]
    srv = commands.add_parser("serve", help="run the engine for field gateways (ZeroMQ + Prometheus)")
    srv.add_argument("network", help="a .net.xml, or a scenario folder / .sumocfg whose net to serve")
    srv.add_argument("--bind", default="tcp://127.0.0.1:5555",
                     help="ZeroMQ address to bind (default tcp://127.0.0.1:5555; port * picks a free one)")
    srv.add_argument("--controller", choices=adaptive, default="citybrain")
    srv.add_argument("--period", type=float, default=1.0, help="control period, s (default 1; 0.1 for 10 Hz)")
    srv.add_argument("--clock", choices=CLOCKS, default="wall",
                     help="wall: step on the engine's clock (field); frames: step when a frame reaches the next "
                          "period (simulation, replay) (default wall)")
    srv.add_argument("--stale-after", type=float, default=5.0,
                     help="s without data before a lane is stale and its signals fall back to fixed time (default 5)")
    srv.add_argument("--max-message-mb", type=float, default=16.0, help="larger messages are refused (default 16)")
    srv.add_argument("--max-rate", type=float, default=5000.0, help="messages/s per sender (default 5000)")
    srv.add_argument("--metrics-address", default="127.0.0.1", help="address of /metrics (default 127.0.0.1)")
    srv.add_argument("--metrics-port", type=int, default=9100,
                     help="port of /metrics (default 9100; 0 picks a free one, -1 turns it off)")
    srv.add_argument("--no-preemption", action="store_true",
                     help="ignore emergency-vehicle sightings (no preemption)")
    _add_all_red_argument(srv)
    _add_dashboard_arguments(srv)
    srv.add_argument("--no-supervisor", action="store_true",
                     help="never hand a signal back to its plan where adaptive control visibly loses (citybrain.supervisor)")
    srv.set_defaults(handler=_cmd_serve)

    gw = commands.add_parser("gateway", help="run SUMO as a virtual field behind a gateway to `serve`")
    _add_run_arguments(gw, scenario_required=False)
    gw.add_argument("--engine", default="tcp://127.0.0.1:5555", help="the engine's address")
    gw.add_argument("--name", default="sumo-gateway", help="this gateway's name in the engine's logs")
    gw.add_argument("--engine-timeout", type=float, default=None,
                    help="wall s to wait for a command before running the local plan "
                         "(default: two of the engine's periods, at least 1 s)")
    gw.add_argument("--connect-timeout", type=float, default=30.0,
                    help="wall s to wait for the engine at start (default 30)")
    gw.add_argument("--record", metavar="PATH", help="record every message sent and received to PATH")
    gw.add_argument("--replay", metavar="PATH",
                    help="instead of SUMO, replay a recording to the engine and check its commands match")
    gw.set_defaults(handler=_cmd_gateway)

    bench = commands.add_parser("bench", help="latency, wire, scaling and traffic-outcome benchmarks")
    kinds = bench.add_subparsers(dest="bench", required=True)
    lat = kinds.add_parser("latency", help="one full decision step on generated grids, numba vs numpy")
    lat.add_argument("--sizes", default="100,1000,10000", help="signals per grid (default 100,1000,10000)")
    lat.add_argument("--repeat", type=int, default=2000, help="timed steps per size (default 2000)")
    lat.add_argument("--controller", default="citybrain", choices=adaptive,
                     help="the controller in the timed step (default citybrain)")
    wir = kinds.add_parser("wire", help="frame-to-command latency through ZeroMQ on loopback")
    wir.add_argument("--sizes", default="100,10000", help="signals per grid (default 100,10000)")
    wir.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    wir.add_argument("--seconds", type=float, default=30.0, help="wall seconds per size (default 30)")
    wir.add_argument("--controller", default="citybrain", choices=adaptive,
                     help="the engine's controller (default citybrain)")
    sca = kinds.add_parser("scale", help="SUMO + engine on generated grids: wall time per simulated second")
    sca.add_argument("--sizes", default="100,1024,10000", help="signals per grid (default 100,1024,10000)")
    sca.add_argument("--seconds", type=float, default=60.0, help="simulated seconds (default 60)")
    sca.add_argument("--controller", default="citybrain", choices=adaptive, help="the controller (default citybrain)")
    scn = kinds.add_parser("scenarios", help="every controller on grid10x10 and the RESCO maps")
    scn.add_argument("--resco", default="../shared/networks/resco", help="RESCO maps folder")
    scn.add_argument("--scenario", action="append", help="run these instead (repeatable)")
    scn.add_argument("--set", choices=("resco", "cities", "all"), default="resco",
                     help="resco: grid10x10, the RESCO maps (and Berlin, if built); cities: the real-city "
                          "scenarios in --cities; all: both (default resco)")
    scn.add_argument("--cities", default="../shared/networks/cities", help="real-city scenarios folder")
    scn.add_argument("--controllers", default=",".join(DEFAULT_COMPARE))
    scn.add_argument("--seeds", default="42", help="comma-separated SUMO seeds (default 42)")
    scn.add_argument("--end", type=float, help="end time, s (default: each scenario's)")
    _add_detectors_argument(scn)
    _add_all_red_argument(scn)
    scn.add_argument("--workers", type=int, help="parallel simulations (default: one per core)")
    _add_sumo_home_argument(scn)
    scn.add_argument("--layouts", type=int, default=0, metavar="N",
                     help="instead: citybrain on N random sparse loop layouts per scenario (--detectors sparse, "
                          "layout seeds 0..N-1) against fixed, at the first of --seeds")
    scn.add_argument("--out", default="results/bench", help="folder for scenarios.md/.json/.png")
    emg = kinds.add_parser("emergency", help="preemption planning cost, and citybrain with/without preemption "
                                             "on emergency scenarios")
    emg.add_argument("--scenario", action="append",
                     help="emergency scenarios to run (repeatable; default scenarios/grid10x10-ev)")
    emg.add_argument("--route-signals", type=int, default=30, help="signals on the planned route (default 30)")
    emg.add_argument("--repeat", type=int, default=2000, help="timed planning periods (default 2000)")
    _add_all_red_argument(emg)
    emg.add_argument("--seeds", default="42,43,44", help="comma-separated SUMO seeds (default 42,43,44)")
    emg.add_argument("--end", type=float, help="end time, s (default: each scenario's)")
    emg.add_argument("--workers", type=int, help="parallel simulations (default: one per core)")
    emg.add_argument("--out", default="results/bench", help="folder for emergency.md")
    for sub in (lat, wir, sca, scn, emg):
        sub.add_argument("--json", metavar="PATH", help="also write the results as JSON")
        sub.add_argument("--cache", default="results/bench-cache", help="where generated grids are kept")
    bench.set_defaults(handler=_cmd_bench)

    add = commands.add_parser("add-emergency",
                              help="write an emergency-vehicle variant of a scenario (references it, copies nothing)")
    add.add_argument("scenario", help="scenario folder or .sumocfg")
    add.add_argument("--out", required=True, help="folder for the new scenario")
    add.add_argument("--count", type=int, default=10, help="emergency vehicles (default 10)")
    add.add_argument("--seed", type=int, default=1, help="route draw seed (default 1)")
    add.set_defaults(handler=_cmd_add_emergency)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        args.handler(args)
    except (ScenarioError, NetworkError, SimulationError, ValueError, TimeoutError) as exc:
        print(f"citybrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
