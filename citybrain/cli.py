"""`citybrain` command line: simulate and compare controllers on SUMO scenarios."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .controllers import CONTROLLER_NAMES
from .network import NetworkError
from .run import DEFAULT_COMPARE, RunOptions, build_report, compare, simulate
from .scenario import ScenarioError, load_scenario
from .sumo_adapter import BACKENDS

__all__ = ["main"]

_COLUMNS = (
    ("mean_delay_s", "delay s", "{:.1f}"),
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
    rows = [[name, *(fmt.format(result[key]) for key, _, fmt in _COLUMNS)]
            for name, result in report["controllers"].items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    title = (f"{report['scenario']}: {report['end_s'] - report['begin_s']:g} s simulated "
             f"({report['begin_s']:g}-{report['end_s']:g}), seed {report['seed']}, {report['backend']}")
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
    return RunOptions(backend=args.backend, seed=args.seed, begin_s=args.begin, end_s=args.end)


def _write_json(report: dict, path: str | None) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)


def _cmd_simulate(args) -> None:
    options = _options(args)
    scenario = load_scenario(args.scenario)
    begin, end = scenario.window(args.begin, args.end)
    update = _progress_bar(f"{scenario.name}/{args.controller}")(end - begin)
    result = simulate(args.scenario, args.controller, options, update)
    report = build_report(scenario, options, {args.controller: result})
    print(format_table(report))
    _write_json(report, args.json)


def _cmd_compare(args) -> None:
    controllers = tuple(c.strip() for c in args.controllers.split(",") if c.strip())
    scenario = load_scenario(args.scenario)
    report = compare(args.scenario, controllers, _options(args), args.workers,
                     _progress_bar(f"{scenario.name} x{len(controllers)}"))
    print(format_table(report))
    _write_json(report, args.json)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario folder or .sumocfg file")
    parser.add_argument("--begin", type=float, help="simulation begin, s (default: the scenario's)")
    parser.add_argument("--end", type=float, help="simulation end, s (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=42, help="SUMO random seed (default 42)")
    parser.add_argument("--backend", choices=BACKENDS, default="libsumo",
                        help="libsumo (in-process, fast) or traci (socket) (default libsumo)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citybrain", description="Real-time traffic-signal control, in SUMO.")
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="run one controller on a scenario")
    _add_run_arguments(sim)
    sim.add_argument("--controller", choices=CONTROLLER_NAMES, default="citybrain")
    sim.set_defaults(handler=_cmd_simulate)

    cmp = commands.add_parser("compare", help="run several controllers on a scenario, in parallel")
    _add_run_arguments(cmp)
    cmp.add_argument("--controllers", default=",".join(DEFAULT_COMPARE),
                     help=f"comma-separated, from {', '.join(CONTROLLER_NAMES)} (default: all)")
    cmp.add_argument("--workers", type=int, help="parallel simulations (default: one per core)")
    cmp.set_defaults(handler=_cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ScenarioError, NetworkError, ValueError) as exc:
        print(f"citybrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
