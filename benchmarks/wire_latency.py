"""Frame-in to command-out latency of `citybrain serve` over ZeroMQ on loopback.

    python benchmarks/wire_latency.py --signals 100 --rate 10 --seconds 30
    python benchmarks/wire_latency.py --signals 10000 --rate 1 --seconds 30

Grids are generated into results/bench-cache/ on first use (10,000 signals: ~20 s).

Starts `citybrain serve` (frames clock: it steps as soon as a frame reaches the
next period) on a generated grid with a signal at every junction, and plays a
gateway that sends a full detector frame (every lane: vehicles, halting,
occupancy as raw float32) at the given rate. Latency is measured at the
gateway from just before the frame is handed to ZeroMQ to the arrival of the
command answering it: encoding, transport both ways, decoding, validation,
merging, the control step and the safety layer included. The engine runs in
its own process, as in the field; the two share this machine's 2 cores.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from citybrain import protocol as p
from citybrain.grids import bench_grid
from citybrain.network import load_network
from citybrain.wire import GatewayLink


def start_engine(net_file: Path, period_s: float):
    proc = subprocess.Popen([sys.executable, "-m", "citybrain.cli", "serve", str(net_file), "--clock", "frames",
                             "--period", str(period_s), "--bind", "tcp://127.0.0.1:*", "--metrics-port", "-1"],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        match = re.search(r"listening on (\S+);", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, match.group(1)
    raise RuntimeError(f"serve did not start (exit {proc.wait()})")


def run(n_signals: int, rate_hz: float, seconds: float) -> dict:
    net_file = bench_grid(n_signals)
    period_s = 1.0 / rate_hz
    engine, endpoint = start_engine(net_file, period_s)
    try:
        net = load_network(net_file)
        link = GatewayLink(endpoint)
        seq = 1
        deadline = time.monotonic() + 120
        while not link.send(p.encode(p.Hello(seq, 0.0, "bench", net.signal_ids, net.lane_ids))):
            if time.monotonic() > deadline:
                raise RuntimeError("engine unreachable")
            time.sleep(0.05)
        if link.receive(120.0) is None:
            raise RuntimeError("no welcome")
        rng = np.random.default_rng(0)
        frames = []
        for _ in range(16):
            vehicles = rng.poisson(3.0, net.n_lanes).astype(np.float32)
            halting = np.minimum(vehicles, rng.poisson(2.0, net.n_lanes)).astype(np.float32)
            frames.append((vehicles, halting, vehicles / 30))
        n_frames = int(seconds * rate_hz)
        latencies, lost, frame_bytes = [], 0, 0
        start = time.monotonic()
        for i in range(n_frames):
            time.sleep(max(0.0, start + i * period_s - time.monotonic()))
            seq += 1
            data = p.encode(p.DetectorMessage(seq, i * period_s, None, *frames[i % len(frames)]))
            frame_bytes = len(data)
            sent = time.perf_counter()
            link.send(data)
            while True:
                reply = link.receive(max(period_s, 1.0))
                if reply is None:
                    lost += 1
                    break
                message = p.decode(reply)
                if isinstance(message, p.SignalCommand) and message.frame_seq == seq:
                    latencies.append(time.perf_counter() - sent)
                    break
        achieved_hz = n_frames / (time.monotonic() - start)
        link.close()
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(30)
    lat = np.array(latencies) * 1e6
    # The first frames include the engine's first full command; report steady state too.
    return {
        "signals": net.n_signals, "lanes": net.n_lanes, "rate_hz": rate_hz, "frames": n_frames,
        "commands": len(latencies), "lost": lost, "achieved_hz": round(achieved_hz, 2),
        "frame_bytes": frame_bytes,
        "p50_us": round(float(np.percentile(lat, 50)), 1), "p99_us": round(float(np.percentile(lat, 99)), 1),
        "max_us": round(float(lat.max()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, default=100, help="a square number (default 100)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    result = run(args.signals, args.rate, args.seconds)
    print(f"{result['signals']} signals, {result['lanes']} lanes, {result['frame_bytes'] / 1e3:.0f} kB frames at "
          f"{result['rate_hz']:g} Hz: frame->command p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us, "
          f"max {result['max_us']:.0f} us; {result['commands']}/{result['frames']} answered, {result['lost']} lost")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
