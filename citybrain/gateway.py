"""A field gateway: detector frames out over the wire, engine commands in.

`WireControl` has the same `step(frame) -> SignalCommands` as the in-process
`Engine`, so `citybrain.run` drives SUMO through the wire with the very loop
`simulate` uses. In the first period the signals start on their program, as
SUMO runs it, and the gateway reports what they show. Then, per control
period, it sends a state report and a detector frame, waits (lockstep) for
the command answering that frame, checks each state change with its own
`CommandGuard`, and applies it.

When the engine does not answer in time, or is not there, the gateway keeps
every signal on the net's fixed-time plan, run by its own safety layer from
exactly the stage the engine last commanded, so clearance in progress is
finished, never cut. It keeps sending frames and hellos; a (re)started engine
takes over the signals' state from the gateway's reports and control resumes.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol as p
from .config import PreemptionConfig, SignalTiming
from .controllers import FixedTimePlan
from .engine import Engine, SignalCommands
from .frame import DetectorFrame
from .network import Network
from .safety import CommandGuard
from .wire import GatewayLink

__all__ = ["GatewayOptions", "WireControl", "replay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayOptions:
    engine_address: str = "tcp://127.0.0.1:5555"
    name: str = "sumo-gateway"
    # Wall time to wait for the command answering a frame before running the local plan;
    # None: two of the engine's periods (its step answers a frame up to a period later), at least 1 s.
    engine_timeout_s: float | None = None
    # Wall time to wait for the engine at start (it may still be loading the network).
    connect_timeout_s: float = 30.0
    hello_interval_s: float = 0.5
    # Simulated seconds per wall second; None runs as fast as the engine answers.
    record_path: Path | None = None


class WireControl:
    def __init__(self, network: Network, timing: SignalTiming, options: GatewayOptions):
        self.network = network
        self.options = options
        self.link = GatewayLink(options.engine_address)
        # The local plan is the net's fixed-time plan alone: preemption runs in the engine.
        self.local = Engine(network, FixedTimePlan(network), timing,
                            preemption=PreemptionConfig(enabled=False))
        self.preempting = np.zeros(network.n_signals, dtype=bool)
        self.mirror = self.local.safety          # what the signals show, in stage-machine terms
        self.signals = self.mirror
        self.preemption = None                   # runs in the engine; `preempting` comes with its commands
        self.guard = CommandGuard(network)
        self.recorder = open(options.record_path, "wb") if options.record_path else None
        self.seq = 0
        self.mode = "local"
        self.welcomed = False
        self.engine_id: str | None = None
        self.session = -1                        # the welcome's; commands for another session are ignored
        self.controller: str | None = None
        self.mirror_time_s = 0.0                 # when the mirror's stage times were true
        self.command_seq = -1
        self.pending_rejections: list[tuple[int, str]] = []
        self.engine_timeout_s = options.engine_timeout_s or 1.0
        self.own_change_seq = -1                 # commands decided before our report of this seq are stale
        self.inbox: deque[p.SignalCommand] = deque()
        self.last_hello_s = -np.inf
        self.stats = {"engine_steps": 0, "local_steps": 0, "engine_lost": 0, "engine_restarts": 0,
                      "late_commands": 0, "send_failures": 0, "guard_rejections": 0, "notices": {}}
        self.latencies_s: list[float] = []

    # -- lifecycle ---------------------------------------------------------
    def connect(self) -> bool:
        """Say hello and wait for the engine; False (and local control) if it does not come."""
        deadline = time.monotonic() + self.options.connect_timeout_s
        while time.monotonic() < deadline and not self.welcomed:
            self._hello()
            self._drain(min(self.options.hello_interval_s, max(deadline - time.monotonic(), 0.0)))
        if not self.welcomed:
            log.warning("no engine at %s after %.0f s; starting on the local plan",
                        self.options.engine_address, self.options.connect_timeout_s)
        return self.welcomed

    def close(self) -> None:
        self.link.close()
        if self.recorder:
            self.recorder.close()

    def report(self) -> dict:
        lat = np.array(self.latencies_s) * 1e6
        stats = dict(self.stats)
        stats.update(engine_address=self.options.engine_address, controller=self.controller)
        if lat.size:
            stats.update(frame_to_command_p50_us=round(float(np.percentile(lat, 50)), 1),
                         frame_to_command_p99_us=round(float(np.percentile(lat, 99)), 1))
        return stats

    # -- one control period ------------------------------------------------
    def step(self, frame: DetectorFrame) -> SignalCommands:
        self._drain(0.0)
        if not self.welcomed:
            self._hello()
            self._drain(0.0)
        if not self.local.started:
            # The signals start on their program; the engine takes them over from our report.
            commands = self._local_step(frame)
            self._send(self._state_report(frame.time_s))
            return commands
        report = self._state_report(frame.time_s)
        sent_at = time.perf_counter()
        sent = self._send(report) and (not frame.emergency or self._send(self._camera(frame)))
        frame_seq = self._next_seq()
        sent = sent and self._send(
            p.DetectorMessage(frame_seq, frame.time_s, None, frame.vehicles, frame.halting, frame.occupancy))
        changes: dict[int, str] = {}
        if self.welcomed:
            answered = self._await_command(frame_seq, self.engine_timeout_s if sent else 0.0, frame, changes)
            if answered:
                self.latencies_s.append(time.perf_counter() - sent_at)
                return _as_commands(changes)
            self.stats["engine_lost"] += 1
            self.welcomed = False
            log.warning("no command from the engine within %.1f s at t=%.0f; signals on the local plan",
                        self.engine_timeout_s, frame.time_s)
        local = self._local_step(frame)
        changes.update(zip(local.signals.tolist(), local.states))
        return _as_commands(changes)

    def _local_step(self, frame: DetectorFrame) -> SignalCommands:
        self._own_change()
        self.preempting[:] = False
        self.stats["local_steps"] += 1
        commands = self.local.step(frame)
        self.mirror_time_s = frame.time_s
        for signal, state in zip(commands.signals, commands.states):
            self.guard.shown_now(int(signal), state, frame.time_s)
        return commands

    def _own_change(self) -> None:
        """We changed what a signal shows ourselves: until the engine has taken our next
        report, its commands build on a picture that is no longer true."""
        self.mode = "local"
        self.own_change_seq = self.seq + 1

    def _apply(self, command: p.SignalCommand, frame: DetectorFrame, run_local: bool) -> dict[int, str]:
        """Apply what passes our guard; signals the engine does not command run our plan
        (`run_local`: once per period). Returns the changes shown, by signal."""
        n, now_s = self.network.n_signals, frame.time_s
        if command.phase.size != n:
            self.stats["guard_rejections"] += 1
            log.warning("command %d does not match our %d signals; ignored", command.seq, n)
            return {}
        m = self.mirror
        stage_arrays = (m.green_phase, m.next_phase, m.stage, m.stage_time_s)
        controlled = command.phase != p.NOT_CONTROLLED
        accepted, states = [], []
        if run_local and not controlled.all():
            kept = [a[controlled] for a in stage_arrays]
            local = self.local.step(frame)
            for a, before in zip(stage_arrays, kept):
                a[controlled] = before
            for signal, state in zip(local.signals.tolist(), local.states):
                if not controlled[signal] and self.guard.check(signal, state, now_s) is None:
                    accepted.append(signal)
                    states.append(state)
                    self.guard.shown_now(signal, state, now_s)
        m.stage_time_s[controlled] += now_s - self.mirror_time_s
        applied = controlled.copy()
        for signal, state in zip(command.changed.tolist(), command.states):
            reason = self.guard.check(signal, state, now_s)
            if reason:
                applied[signal] = False
                self.pending_rejections.append((signal, reason))
                self.stats["guard_rejections"] += 1
                self._own_change()
            else:
                accepted.append(signal)
                states.append(state)
                self.guard.shown_now(signal, state, now_s)
        for a, key in zip(stage_arrays, ("phase", "next_phase", "stage", "stage_time_s")):
            a[applied] = getattr(command, key)[applied]
        self.mirror_time_s = now_s
        self.preempting[:] = False
        self.preempting[command.preempting] = True
        self.command_seq = command.seq
        if applied[controlled].all():
            self.mode = "engine"
        return dict(zip(accepted, states))

    # -- messages ----------------------------------------------------------
    def _state_report(self, time_s: float) -> p.StateReport:
        m = self.mirror
        # Stage times as of this report: the time in stage when last set, plus what has passed since.
        report = p.StateReport(self._next_seq(), time_s, self.command_seq, self.mode, m.green_phase, m.next_phase,
                               m.stage, m.stage_time_s + (time_s - self.mirror_time_s),
                               tuple(self.pending_rejections))
        self.pending_rejections = []
        return report

    def _camera(self, frame: DetectorFrame) -> p.CameraMessage:
        """Emergency vehicles as a camera/AVL feed reports them (the engine needs
        only the edge of the lane, so lane 0 of the vehicle's edge stands for it)."""
        edges = self.network.edge_ids
        sightings = tuple(
            p.EmergencySighting(v.vehicle_id, f"{edges[v.edge]}_0", v.position_m, v.speed_mps,
                                tuple(edges[e] for e in v.route),
                                edges[v.destination] if v.destination >= 0 else None, v.priority)
            for v in frame.emergency)
        return p.CameraMessage(self._next_seq(), frame.time_s, None, None, None, sightings)

    def _hello(self) -> None:
        now = time.monotonic()
        if now - self.last_hello_s < self.options.hello_interval_s:
            return
        self.last_hello_s = now
        self._send(p.Hello(self._next_seq(), 0.0, self.options.name, self.network.signal_ids,
                           self.network.lane_ids))

    def _await_command(self, frame_seq: int, timeout_s: float, frame: DetectorFrame, changes: dict) -> bool:
        """Apply our session's commands in order until the one answering `frame_seq`
        (True), or the timeout (False). Commands decided before the engine had our
        latest own change are skipped."""
        deadline = time.monotonic() + timeout_s
        while True:
            while self.inbox:
                command = self.inbox.popleft()
                if command.session != self.session or command.state_seq < self.own_change_seq:
                    self.stats["late_commands"] += 1
                    continue
                answered = command.frame_seq == frame_seq
                changes.update(self._apply(command, frame, run_local=answered))
                if answered:
                    self.stats["engine_steps"] += 1
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.welcomed:
                return False   # not welcomed: the engine forgot us (restart); say hello again next period
            self._receive(remaining)

    def _drain(self, timeout_s: float) -> None:
        """Handle what has arrived (welcomes, notices); commands wait in the inbox."""
        while self._receive(timeout_s) is not None:
            timeout_s = 0.0

    def _receive(self, timeout_s: float):
        data = self.link.receive(timeout_s)
        if data is None:
            return None
        self._record("in", data)
        try:
            message = p.decode(data)
        except p.ProtocolError as exc:
            log.warning("undecodable message from the engine: %s", exc)
            return None
        if isinstance(message, p.SignalCommand):
            self.inbox.append(message)
        elif isinstance(message, p.Welcome):
            if self.engine_id is not None and message.engine_id != self.engine_id:
                self.stats["engine_restarts"] += 1
            self.engine_id, self.controller, self.welcomed = message.engine_id, message.controller, True
            self.session, self.command_seq = message.session, -1
            self.engine_timeout_s = self.options.engine_timeout_s or max(1.0, 2.0 * message.period_s)
            if message.owned_signals:
                log.warning("%d of our signals belong to another gateway session, e.g. %r; we run their plan",
                            len(message.owned_signals), message.owned_signals[0])
            if message.unknown_signals or message.unknown_lanes:
                log.warning("engine does not know %d of our signals and %d of our lanes",
                            len(message.unknown_signals), len(message.unknown_lanes))
        elif isinstance(message, p.ErrorNotice):
            notices = self.stats["notices"]
            notices[message.reason] = notices.get(message.reason, 0) + 1
            if message.reason == "unknown_gateway":
                self.welcomed = False
        return message

    def _send(self, message) -> bool:
        data = p.encode(message)
        if not self.link.send(data):
            self.stats["send_failures"] += 1
            return False
        self._record("out", data)
        return True

    def _record(self, direction: str, data: bytes) -> None:
        if self.recorder:
            p.write_record(self.recorder, direction, time.time(), data)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq


def _as_commands(changes: dict[int, str]) -> SignalCommands:
    return SignalCommands(np.array(list(changes), dtype=np.int32), tuple(changes.values()))


def replay(path: Path, engine_address: str, timeout_s: float = 5.0) -> dict:
    """Send a recorded gateway stream to an engine, in order and in lockstep, and
    compare every command with the one recorded. A fresh engine running the
    recorded controller reproduces the recording exactly."""
    records = list(p.read_records(path))
    expected: dict[int, p.SignalCommand] = {}
    for direction, _, data in records:
        if direction == "in":
            message = p.decode(data)
            if isinstance(message, p.SignalCommand):
                expected.setdefault(message.frame_seq, message)
    link = GatewayLink(engine_address)
    result = {"messages": 0, "frames": 0, "commands": 0, "mismatches": 0, "missing": 0, "first_mismatch": None}
    latencies = []
    try:
        for direction, _, data in records:
            if direction != "out":
                continue
            message = p.decode(data)
            deadline = time.monotonic() + timeout_s
            while not link.send(data):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no engine at {engine_address}")
                time.sleep(0.01)
            result["messages"] += 1
            if isinstance(message, p.Hello):
                _await(link, lambda m: isinstance(m, p.Welcome), timeout_s)
            elif isinstance(message, p.DetectorMessage):
                result["frames"] += 1
                sent = time.perf_counter()
                command = _await(link, lambda m, seq=message.seq: isinstance(m, p.SignalCommand)
                                 and m.frame_seq == seq, timeout_s)
                if command is None:
                    result["missing"] += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                result["commands"] += 1
                recorded = expected.get(message.seq)
                if recorded is None or not _same_command(command, recorded):
                    result["mismatches"] += 1
                    if result["first_mismatch"] is None:
                        result["first_mismatch"] = {"frame_seq": message.seq, "time_s": message.time_s}
    finally:
        link.close()
    if latencies:
        lat = np.array(latencies) * 1e6
        result.update(frame_to_command_p50_us=round(float(np.percentile(lat, 50)), 1),
                      frame_to_command_p99_us=round(float(np.percentile(lat, 99)), 1))
    return result


def _await(link: GatewayLink, wanted, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        data = link.receive(remaining)
        if data is None:
            return None
        message = p.decode(data)
        if wanted(message):
            return message
    return None


def _same_command(a: p.SignalCommand, b: p.SignalCommand) -> bool:
    return (np.array_equal(a.phase, b.phase) and np.array_equal(a.next_phase, b.next_phase)
            and np.array_equal(a.stage, b.stage) and np.allclose(a.stage_time_s, b.stage_time_s)
            and np.array_equal(a.changed, b.changed) and a.states == b.states)
