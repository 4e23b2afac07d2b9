"""Markdown table of `citybrain compare` reports on the RESCO maps beside the
published RESCO figures, read from ../shared/networks/README.md.

    for m in cologne1 cologne3 cologne8 ingolstadt1 ingolstadt7 ingolstadt21 grid4x4 arterial4x4; do
        citybrain compare ../shared/networks/resco/$m/$m.sumocfg --json results/resco/$m.json
    done
    python benchmarks/resco_table.py results/resco
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from citybrain.bench import RESCO_MAPS, published_resco

PUBLISHED = Path(__file__).resolve().parent.parent.parent / "shared" / "networks" / "README.md"


def ratio(value: float, base: str) -> str:
    try:
        return f"{value / float(base.lstrip('~')):.2f}"
    except ValueError:
        return "–"


def main(folder: str) -> None:
    pub = published_resco(PUBLISHED)
    print("| map | fixed | actuated | maxpressure | citybrain | RESCO Fixed | RESCO MaxPressure | RESCO best "
          "| MP/fixed ours | MP/Fixed RESCO | violations |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in RESCO_MAPS:
        path = Path(folder) / f"{name}.json"
        if not path.exists():
            continue
        c = json.loads(path.read_text())["controllers"]
        d = {k: v["mean_delay_s"] for k, v in c.items()}
        p = pub.get(name, {})
        ours_ratio = f"{d['maxpressure'] / d['fixed']:.2f}"
        theirs = ratio(float(p["MaxPressure"]), p["Fixed"]) if p.get("Fixed", "–") != "–" else "–"
        violations = sum(v["safety_violations"] for k, v in c.items() if k in ("maxpressure", "citybrain"))
        print(f"| {name} | {d['fixed']:.1f} | {d['actuated']:.1f} | {d['maxpressure']:.1f} | {d['citybrain']:.1f} "
              f"| {p.get('Fixed', '–')} | {p.get('MaxPressure', '–')} | {p.get('best', '–')} "
              f"| {ours_ratio} | {theirs} | {violations} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/resco")
