"""Square SUMO grids with a signal at every junction, for benchmarks at city scale.

Built by `netgenerate` (deterministic) into a cache folder on first use; a
10,000-signal grid takes ~20 s and 210 MB, so it is never committed. Inner
junctions have 4 legs and 4 phases; fringe ones 2-3 legs.
"""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

from .sumo_home import sumo_binary

__all__ = ["bench_grid", "DEFAULT_CACHE"]

DEFAULT_CACHE = Path("results") / "bench-cache"


def bench_grid(n_signals: int, cache: Path = DEFAULT_CACHE) -> Path:
    # The most nearly square grid with exactly n_signals junctions (1000: 25 x 40).
    columns = next(d for d in range(math.isqrt(n_signals), 0, -1) if n_signals % d == 0)
    rows = n_signals // columns
    out = cache / f"grid{n_signals}.net.xml"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial.xml")
        subprocess.run([
            sumo_binary("netgenerate"), "--grid", "--grid.x-number", str(columns), "--grid.y-number", str(rows),
            "--grid.length", "200",
            "--default.lanenumber", "2", "--default.speed", "13.89",
            "--turn-lanes", "1", "--turn-lanes.length", "60",
            "-j", "traffic_light", "--tls.default-type", "static", "--tls.yellow.time", "3",
            "--tls.left-green.time", "10", "--no-turnarounds", "true", "--seed", "1",
            "-o", str(partial),
        ], check=True, capture_output=True)
        partial.rename(out)
    return out

