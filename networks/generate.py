"""Generate the project's own SUMO networks and scenarios, reproducibly.

    make networks                                   # all of them
    .venv/bin/python networks/generate.py grid3x3-short   # one

Each grid is built by `netgenerate` with a fixed seed: signalised 4-leg
intersections (the inner n x n nodes, listed explicitly with --tls.set so no
single-phase lights land on the fringe), 2 through lanes plus a left-turn bay,
and a protected-left 4-phase program. Demand comes from SUMO's randomTrips.py,
fringe to fringe, routed with duarouter, with a fixed seed. Outputs are
committed; re-running this script reproduces them byte for byte.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from citybrain.emergency_demand import add_emergency_vehicles
from citybrain.sumo_home import sumo_binary, sumo_tool

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GridSpec:
    name: str
    size: int               # signalised intersections per side
    block_m: float
    seed: int


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    grid: GridSpec
    trips_per_hour: int
    duration_s: int
    seed: int


GRID10 = GridSpec("grid10x10", 10, 200.0, seed=42)
GRID3 = GridSpec("grid3x3", 3, 200.0, seed=7)

SCENARIOS = {
    "grid10x10": ScenarioSpec("grid10x10", GRID10, trips_per_hour=7000, duration_s=3600, seed=42),
    "grid3x3-short": ScenarioSpec("grid3x3-short", GRID3, trips_per_hour=1800, duration_s=300, seed=7),
}


@dataclass(frozen=True)
class EmergencySpec:
    """An emergency variant of one of SCENARIOS (citybrain.emergency_demand)."""

    base: str
    count: int
    seed: int
    departs: tuple[float, float] = (0.1, 0.7)


EMERGENCY = {
    "grid10x10-ev": EmergencySpec("grid10x10", count=12, seed=1),
    "grid3x3-ev": EmergencySpec("grid3x3-short", count=2, seed=1, departs=(0.1, 0.5)),
}


def node_ids(size: int) -> list[str]:
    """netgenerate names grid nodes by column letter and row number: A0, A1, ..."""
    return [f"{chr(ord('A') + x)}{y}" for x in range(size) for y in range(size)]


def strip_header(path: Path) -> None:
    """SUMO tools open their output with a comment holding the date and absolute
    paths; drop it so that the output depends only on the inputs."""
    text = path.read_text()
    path.write_text(re.sub(r"<!-- generated on .*?-->\s*", "", text, flags=re.S))


def build_net(grid: GridSpec, root: Path) -> Path:
    out = root / "networks" / grid.name / f"{grid.name}.net.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([
        sumo_binary("netgenerate"), "--grid",
        "--grid.number", str(grid.size),
        "--grid.length", str(grid.block_m),
        "--grid.attach-length", str(grid.block_m),
        "--default.lanenumber", "2",
        "--default.speed", "13.89",
        "--turn-lanes", "1", "--turn-lanes.length", "60",
        "--tls.set", ",".join(node_ids(grid.size)),
        "--tls.default-type", "static",
        "--tls.yellow.time", "3",
        "--tls.left-green.time", "10",
        "--seed", str(grid.seed),
        "--no-turnarounds", "true",
        "--output-file", str(out),
    ], check=True, stdout=subprocess.DEVNULL)
    strip_header(out)
    return out


def build_scenario(spec: ScenarioSpec, net: Path, root: Path) -> Path:
    folder = root / "scenarios" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    routes = folder / f"{spec.name}.rou.xml"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([
            sys.executable, sumo_tool("randomTrips.py"),
            "--net-file", str(net),
            "--route-file", str(routes),
            "--output-trip-file", str(Path(tmp) / "trips.xml"),
            "--begin", "0", "--end", str(spec.duration_s),
            "--insertion-rate", str(spec.trips_per_hour),
            "--random-depart",
            "--fringe-factor", "max",
            "--min-distance", str(3 * spec.grid.block_m),
            "--seed", str(spec.seed),
            "--prefix", "veh",
            "--trip-attributes", 'departLane="best" departSpeed="max"',
            "--validate",
        ], check=True, stdout=subprocess.DEVNULL)
    strip_header(routes)
    cfg = folder / f"{spec.name}.sumocfg"
    net_rel = Path("..") / ".." / "networks" / spec.grid.name / net.name
    cfg.write_text(
        "<configuration>\n"
        "    <input>\n"
        f'        <net-file value="{net_rel.as_posix()}"/>\n'
        f'        <route-files value="{routes.name}"/>\n'
        "    </input>\n"
        "    <time>\n"
        '        <begin value="0"/>\n'
        f'        <end value="{spec.duration_s}"/>\n'
        "    </time>\n"
        "</configuration>\n"
    )
    return cfg


def build_berlin(root: Path, trips_per_hour: int = 1500, seed: int = 42) -> Path:
    """The piece of Berlin SUMO ships (tools/game/DRT/osm.net.xml, 15 signals),
    with seeded random passenger demand: SUMO ships the net but no traffic for it.
    The net stays in the installed wheel, so the .sumocfg names it by absolute
    path and the scenario is built per machine (scenarios/berlin is not committed)."""
    net = Path(sumo_tool("game/DRT/osm.net.xml"))
    folder = root / "scenarios" / "berlin"
    folder.mkdir(parents=True, exist_ok=True)
    routes = folder / "berlin.rou.xml"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([
            sys.executable, sumo_tool("randomTrips.py"),
            "--net-file", str(net), "--route-file", str(routes),
            "--output-trip-file", str(Path(tmp) / "trips.xml"),
            "--begin", "0", "--end", "3600",
            "--insertion-rate", str(trips_per_hour), "--random-depart",
            "--fringe-factor", "10", "--min-distance", "500",
            "--vehicle-class", "passenger",
            "--seed", str(seed), "--prefix", "veh",
            "--trip-attributes", 'departLane="best" departSpeed="max"',
            "--validate",
        ], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    strip_header(routes)
    cfg = folder / "berlin.sumocfg"
    cfg.write_text(
        "<configuration>\n"
        f'    <input><net-file value="{net}"/><route-files value="{routes.name}"/></input>\n'
        '    <time><begin value="0"/><end value="3600"/></time>\n'
        "</configuration>\n"
    )
    return cfg


RILSA_EXAMPLES = (1, 2, 3, 4)


def build_rilsa(root: Path, example: int) -> Path:
    """One of the four real intersections SUMO ships from Germany's signal guideline
    RiLSA (tools/sumolib/scenario/scenarios/RealWorld/RiLSA_exampleN): its net, the
    guideline's own fixed-time program (run by `fixed`) and an hour of its counted
    flows, which SUMO's makeRoutes.py there writes. Net and program stay in the
    installed wheel, named by absolute path, so the scenario is built per machine
    (scenarios/rilsaN is not committed)."""
    source = Path(sumo_tool(f"sumolib/scenario/scenarios/RealWorld/RiLSA_example{example}"))
    folder = root / "scenarios" / f"rilsa{example}"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(source / "makeRoutes.py")], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    cfg = folder / f"rilsa{example}.sumocfg"
    cfg.write_text(
        "<configuration>\n"
        "    <input>\n"
        f'        <net-file value="{source / f"rilsa{example}.net.xml"}"/>\n'
        f'        <route-files value="{source / "vtypes.add.xml"},flows.rou.xml"/>\n'
        f'        <additional-files value="{source / f"rilsa{example}_tls.add.xml"}"/>\n'
        "    </input>\n"
        '    <time><begin value="0"/><end value="3600"/></time>\n'
        "</configuration>\n"
    )
    return cfg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[[], *SCENARIOS, *EMERGENCY, "berlin", "rilsa"],
                        help="scenarios to build (default: the committed ones; berlin and rilsa only when named)")
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write networks/ and scenarios/ under")
    args = parser.parse_args(argv)
    for name in args.names or [*SCENARIOS, *EMERGENCY]:
        if name == "berlin":
            print(f"berlin: {build_berlin(args.out)}")
            continue
        if name == "rilsa":
            for example in RILSA_EXAMPLES:
                print(f"rilsa{example}: {build_rilsa(args.out, example)}")
            continue
        if name in EMERGENCY:
            spec = EMERGENCY[name]
            cfg = add_emergency_vehicles(args.out / "scenarios" / spec.base, args.out / "scenarios" / name,
                                         spec.count, spec.seed, departs=spec.departs)
            print(f"{name}: {cfg}")
            continue
        spec = SCENARIOS[name]
        net = build_net(spec.grid, args.out)
        cfg = build_scenario(spec, net, args.out)
        print(f"{name}: {cfg}")


if __name__ == "__main__":
    main()
