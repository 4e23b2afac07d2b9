"""Time one engine decision step (frame -> controller -> safety layer -> command
diff) on grid10x10, after JIT warm-up, with synthetic frames.

    python benchmarks/decision_step.py [--repeat N]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from citybrain.controllers import make_controller
from citybrain.engine import Engine
from citybrain.frame import DetectorFrame
from citybrain.network import load_network

NET = Path(__file__).resolve().parent.parent / "networks" / "grid10x10" / "grid10x10.net.xml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args()
    net = load_network(NET)
    rng = np.random.default_rng(0)
    frames = []
    for t in range(64):
        vehicles = rng.integers(0, 20, net.n_lanes).astype(np.float64)
        halting = np.minimum(vehicles, rng.integers(0, 15, net.n_lanes))
        frames.append(DetectorFrame(float(t), vehicles, halting, vehicles / 25.0))
    for name in ("maxpressure", "citybrain"):
        engine = Engine(net, make_controller(name, net))
        for frame in frames:          # JIT warm-up and the first, full command
            engine.step(frame)
        samples = np.empty(args.repeat)
        for i in range(args.repeat):
            frame = frames[i % len(frames)]
            start = time.perf_counter_ns()
            engine.step(frame)
            samples[i] = (time.perf_counter_ns() - start) / 1000.0
        p50, p99, worst = np.percentile(samples, [50, 99, 100])
        print(f"{name:12s} {net.n_signals} signals: p50 {p50:.1f} us  p99 {p99:.1f} us  max {worst:.1f} us "
              f"({args.repeat} steps)")


if __name__ == "__main__":
    main()
