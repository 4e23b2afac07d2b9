"""Where one decision step goes, part by part (the path `citybrain bench latency` times whole).

    .venv/bin/python benchmarks/step_breakdown.py 100 [citybrain|maxpressure]
    .venv/bin/python benchmarks/step_breakdown.py 10000 maxpressure

Same generated grid and synthetic frames as the bench; prints the median of each part
over 568 steps after 32 warm-up steps.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from citybrain import kernels, protocol
from citybrain.bench import _synthetic_frames, cached_network
from citybrain.config import SignalTiming
from citybrain.controllers import make_controller
from citybrain.field import FieldConfig, FieldEngine
from citybrain.frame import DetectorFrame


def main(size: int, controller: str) -> None:
    _, net = cached_network(size)
    frames = _synthetic_frames(net, 16)
    field = FieldEngine(net, make_controller(controller, net), SignalTiming(), FieldConfig(clock="frames"))
    field.receive(b"b", protocol.encode(protocol.Hello(1, 0.0, "b", net.signal_ids, net.lane_ids)), 0.0, 0.0)
    session = field.sessions[b"b"]
    messages = [protocol.DetectorMessage(i + 2, float(i), None, *frames[i % 16]) for i in range(600)]
    for message in messages[:32]:
        field.merge_counts(session, message)
        field.step(0.0)
    engine, parts = field.engine, {}

    def timed(name, work, *args):
        start = time.perf_counter_ns()
        result = work(*args)
        parts.setdefault(name, []).append(time.perf_counter_ns() - start)
        return result

    def command(now, signals, states):
        # The bench's gateway has every signal, in the engine's order (FieldEngine's whole-network path).
        safety = engine.safety
        return protocol.encode(protocol.SignalCommand(
            1, now, 1, safety.green_phase, safety.next_phase, safety.stage, safety.stage_time_s, signals, states,
            np.flatnonzero(engine.preempting).astype(np.int32)))

    changed_count = 0
    for message in messages[32:]:
        timed("frame merge", field.merge_counts, session, message)
        now = field.now(0.0)
        timed("staleness", kernels.stale_signals, field.lane_seen_s, now, field.config.stale_after_s,
              field.signal_lane_ptr, field.signal_lanes, field.stale)
        frame = DetectorFrame(now, field.vehicles, field.halting, field.occupancy, ())
        timed("controller", engine.controller.decide, frame, engine.safety, engine.requested)
        timed("preemption (idle)", engine.preemption.plan, frame, engine.safety, engine.requested)
        changed = timed("safety layer", engine.safety.advance, engine.requested, engine.preempting)
        signals = np.flatnonzero(changed).astype(np.int32)
        changed_count += len(signals)
        states = timed("state strings", engine.safety.state_strings, signals)
        timed("command", command, now, signals, states)
    for name, samples in parts.items():
        print(f"{name:20s} {np.median(samples) / 1e3:9.1f} us")
    print(f"{'sum of medians':20s} {sum(np.median(s) for s in parts.values()) / 1e3:9.1f} us; "
          f"{changed_count / (len(messages) - 32):.0f} signals change display per step")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, sys.argv[2] if len(sys.argv) > 2 else "citybrain")
