"""The engine behind the wire, without the wire.

`FieldEngine` turns incoming protocol messages into per-lane detector state,
runs the control step, and turns its result into per-gateway commands. It does
no I/O: `citybrain.wire` moves the bytes, so this class is the same whether the
bytes come from ZeroMQ, a recording or a test.

What it guarantees about bad input: every message, or every lane or id inside
one, that cannot be trusted is rejected with a reason from
`protocol.REJECT_REASONS`, counted, logged once per reason, and answered with
an `ErrorNotice`; everything else in the same message, and every other
sender, is served as if nothing happened. A signal whose detectors fall
silent runs its fixed-time plan until they report again.

What it guarantees about commands: a signal belongs to one gateway session
(a second claim is refused, `signal_owned`, until the holder has been silent
for `stale_after_s`); the engine commands a signal only once its gateway has
reported what it shows, continuing from exactly that stage and time in stage;
and every change it sends has passed the same `CommandGuard` a gateway runs,
judged against what the engine knows the signal shows. A change the guard
refuses is not sent: it is counted, and the signal waits for its next report.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import kernels as compiled_kernels
from . import protocol as p
from .config import PreemptionConfig, SignalTiming, SupervisorConfig
from .controllers import Controller
from .engine import Engine
from .frame import DetectorFrame, EmergencyVehicle
from .live import LiveView
from .kernels import STAGE_GREEN
from .network import Network
from .safety import CommandGuard
from .telemetry import EngineMetrics

__all__ = ["FieldConfig", "FieldEngine", "CLOCKS"]

log = logging.getLogger(__name__)

# wall: the engine steps every period of its own clock and judges timestamps
#       against it (the field; gateways keep their clocks synchronised, e.g. NTP).
# frames: the engine steps when a detector frame's timestamp reaches the next
#       period (a simulation or a replay drives time; lowest latency). One
#       simulation at a time: a hello starts the clock over.
CLOCKS = ("wall", "frames")


@dataclass(frozen=True)
class FieldConfig:
    period_s: float = 1.0
    clock: str = "wall"
    # A lane not reported for this long is stale; a signal reading a stale lane
    # falls back to its fixed-time plan.
    stale_after_s: float = 5.0
    # Wall clock only: frames stamped further ahead than this are refused.
    max_future_s: float = 2.0
    max_message_bytes: int = 16 * 2**20
    # Per sender, token bucket: sustained rate and burst. A 10 Hz gateway sends ~20/s.
    max_messages_per_s: float = 5000.0
    # Counts above one vehicle per metre of lane cannot be real.
    max_vehicles_per_m: float = 1.0

    def __post_init__(self):
        if self.clock not in CLOCKS:
            raise ValueError(f"unknown clock {self.clock!r}; choose from {', '.join(CLOCKS)}")
        if not self.period_s > 0:
            raise ValueError(f"period_s must be positive, got {self.period_s}")


@dataclass
class _Session:
    """One gateway (one ZeroMQ peer) since its last hello."""

    number: int                  # the welcome's `session`; every command for this session carries it
    name: str
    signals: np.ndarray          # int32 engine index per hello signal, -1 if unknown
    lanes: np.ndarray            # int32 engine index per hello lane, -1 if unknown
    owned: np.ndarray            # bool per hello signal: this session holds it
    position: np.ndarray         # int32 per engine signal: its index in `signals` where owned, else -1
    last_seq: int = -1
    last_frame_seq: int = -1
    last_seen_mono_s: float = 0.0
    last_command_seq: int = -1   # -1: not commanded yet
    last_state_seq: int = -1     # the latest state report taken into account

    def __post_init__(self) -> None:
        # The engine commands a signal once the gateway has reported what it shows.
        self.synced = np.zeros(self.signals.size, dtype=bool)
        # Synced since the last command: its state string goes out even if unchanged.
        self.announce = np.zeros(self.signals.size, dtype=bool)
        self.safe_signals = np.maximum(self.signals, 0)
        # Its lanes are the engine's first lanes, in order: frames merge without a lane gather.
        self.lanes_in_engine_order = bool(np.array_equal(self.lanes, np.arange(len(self.lanes))))

    def release(self, signal: int) -> None:
        """This session no longer holds engine signal `signal`."""
        position = self.position[signal]
        if position >= 0:
            self.owned[position] = self.synced[position] = self.announce[position] = False
            self.position[signal] = -1


@dataclass
class _Bucket:
    tokens: float
    updated_s: float


class FieldEngine:
    def __init__(self, network: Network, controller: Controller, timing: SignalTiming | None = None,
                 config: FieldConfig | None = None, metrics: EngineMetrics | None = None,
                 kernels: ModuleType = compiled_kernels, preemption: PreemptionConfig | None = None,
                 supervisor: SupervisorConfig | None = None):
        self.network = network
        self.config = config or FieldConfig()
        self.timing = (timing or SignalTiming())
        if self.timing.control_period_s != self.config.period_s:
            raise ValueError("timing.control_period_s and config.period_s differ")
        preemption = preemption or PreemptionConfig()
        self.engine = Engine(network, controller, self.timing, kernels, preemption, signals_running=True,
                             supervisor=supervisor)
        self.sighting_ttl_s = preemption.drop_after_s
        self.kernels = kernels
        self.metrics = metrics or EngineMetrics()
        self.engine_id = uuid.uuid4().hex[:12]
        self.controller_name = controller.name
        n_lanes = network.n_lanes
        self.vehicles = np.zeros(n_lanes)
        self.halting = np.zeros(n_lanes)
        self.occupancy = np.zeros(n_lanes)
        self.lane_seen_s = np.full(n_lanes, -np.inf)
        self._stores = (self.vehicles, self.halting, self.occupancy)   # in the merge kernels' field order
        self.lane_capacity = network.lane_length_m * self.config.max_vehicles_per_m + 1.0
        self.lane_index = network.lane_index
        self.signal_index = {sid: i for i, sid in enumerate(network.signal_ids)}
        self.signal_lane_ptr, self.signal_lanes = _signal_lanes(network)
        self.stale = np.ones(network.n_signals, dtype=bool)
        self.sightings: dict[str, EmergencyVehicle] = {}
        self.live: LiveView | None = None      # set to feed the dashboard
        self.sessions: dict[bytes, _Session] = {}
        self.owner: list[bytes | None] = [None] * network.n_signals    # the session holding each signal
        self.guard = CommandGuard(network)    # what each commanded signal shows, as the engine knows it
        self.sessions_started = 0
        self.buckets: dict[bytes, _Bucket] = {}
        self.clock_s = -np.inf         # frames clock: latest accepted detector timestamp
        self.next_step_s = -np.inf
        self.seq = 0
        self._logged: set[str] = set()
        self._reply_time_s = 0.0
        safety = self.engine.safety
        self.metrics.watch_signals(network.signal_ids, lambda: safety.green_phase, lambda: safety.stage,
                                   lambda: self.stale)
        if self.engine.preemption is not None:
            self.metrics.watch_preemption(self.engine.preemption)
        if self.engine.supervisor is not None:
            self.metrics.watch_supervisor(self.engine.supervisor)

    # -- time --------------------------------------------------------------
    def now(self, wall_s: float) -> float:
        return wall_s if self.config.clock == "wall" else self.clock_s

    def _step_time(self, wall_s: float) -> float:
        """The time of this step: a wall-clock step a moment early counts as due, so
        stage times (which advance a whole period per step) never run ahead of the clock."""
        now = self.now(wall_s)
        return max(now, self.next_step_s) if self.config.clock == "wall" else now

    def step_due(self, wall_s: float) -> bool:
        return self.now(wall_s) >= self.next_step_s and np.isfinite(self.now(wall_s))

    # -- input -------------------------------------------------------------
    def receive(self, sender: bytes, data: bytes, wall_s: float, mono_s: float) -> list[tuple[bytes, bytes]]:
        """Handle one message from `sender`; returns replies as (recipient, bytes).
        `wall_s` is the engine's clock (Unix time), `mono_s` a monotonic clock for rate limits."""
        now = self.now(wall_s)
        self._reply_time_s = float(now) if np.isfinite(now) else wall_s
        if not self._admit(sender, mono_s):
            self._reject("rate_limited", f"sender {sender.hex()} over {self.config.max_messages_per_s:g} msg/s")
            return []  # never answer a flood
        try:
            message = p.decode(data, self.config.max_message_bytes, p.GATEWAY_TYPES)
        except p.ProtocolError as exc:
            return self.refuse(sender, exc.reason, exc.detail, exc.seq)
        kind = type(message).__name__
        self.metrics.received.labels(_TYPE_LABEL.get(kind, "other")).inc()
        if isinstance(message, p.Hello):
            return self._hello(sender, message, wall_s, mono_s)
        session = self.sessions.get(sender)
        if session is None:
            return self.refuse(sender, "unknown_gateway", "say hello first (engine restarted?)", message.seq)
        if message.seq <= session.last_seq:
            reason = "duplicate" if message.seq == session.last_seq else "out_of_order"
            return self.refuse(sender, reason, f"seq {message.seq} after {session.last_seq}", message.seq)
        session.last_seq = message.seq
        session.last_seen_mono_s = mono_s
        if isinstance(message, p.Heartbeat):
            return []
        now = self.now(wall_s)
        if np.isfinite(now) and message.time_s < now - self.config.stale_after_s:
            return self.refuse(sender, "stale", f"time_s {message.time_s:.3f} is older than "
                                f"{self.config.stale_after_s:g} s (now {now:.3f})", message.seq)
        if self.config.clock == "wall" and message.time_s > wall_s + self.config.max_future_s:
            return self.refuse(sender, "future", f"time_s {message.time_s:.3f} is ahead of the engine's "
                                f"clock {wall_s:.3f}", message.seq)
        if isinstance(message, p.StateReport):
            problems = self._state(session, message, wall_s)
        else:
            problems = self.merge_counts(session, message)
        return [self._notice(sender, reason, detail, message.seq) for reason, detail in problems]

    def _admit(self, sender: bytes, mono_s: float) -> bool:
        rate = self.config.max_messages_per_s
        bucket = self.buckets.get(sender)
        if bucket is None:
            bucket = self.buckets[sender] = _Bucket(rate, mono_s)
        bucket.tokens = min(rate, bucket.tokens + (mono_s - bucket.updated_s) * rate)
        bucket.updated_s = mono_s
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _hello(self, sender: bytes, hello: p.Hello, wall_s: float, mono_s: float) -> list[tuple[bytes, bytes]]:
        signals = np.array([self.signal_index.get(s, -1) for s in hello.signals], dtype=np.int32)
        lanes = np.array([self.lane_index.get(lane, -1) for lane in hello.lanes], dtype=np.int32)
        unknown_signals = tuple(s for s, i in zip(hello.signals, signals) if i < 0)
        unknown_lanes = tuple(lane for lane, i in zip(hello.lanes, lanes) if i < 0)
        if unknown_signals or unknown_lanes:
            self._reject("unknown_id", f"gateway {hello.gateway!r}: {len(unknown_signals)} unknown signals, "
                         f"{len(unknown_lanes)} unknown lanes (e.g. {(unknown_signals + unknown_lanes)[0]!r})",
                         len(unknown_signals) + len(unknown_lanes))
        if self.config.clock == "frames":
            # A simulation (or replay) starting: its time may begin anywhere, even before the last one's.
            self.clock_s = self.next_step_s = -np.inf
            self.lane_seen_s[:] = -np.inf
        self.forget(sender)     # a hello always starts a new session
        owned = signals >= 0
        position = np.full(self.network.n_signals, -1, dtype=np.int32)
        taken, moved = [], {}
        for k in np.flatnonzero(owned).tolist():
            signal = int(signals[k])
            holder = self.owner[signal]
            if holder is None:
                continue
            if mono_s - self.sessions[holder].last_seen_mono_s <= self.config.stale_after_s:
                owned[k] = False
                taken.append(hello.signals[k])
            else:
                self.sessions[holder].release(signal)
                moved.setdefault(holder, []).append(hello.signals[k])
        position[signals[owned]] = np.flatnonzero(owned)
        self.sessions_started += 1
        session = _Session(self.sessions_started, hello.gateway, signals, lanes, owned, position,
                           last_seq=hello.seq, last_seen_mono_s=mono_s)
        self.sessions[sender] = session
        for signal in signals[owned].tolist():
            self.owner[signal] = sender
        replies = []
        for holder, names in moved.items():
            self.metrics.ownership_moves.inc(len(names))
            detail = (f"{len(names)} of your signals (e.g. {names[0]!r}) now belong to gateway {hello.gateway!r}: "
                      f"you were silent for more than {self.config.stale_after_s:g} s; say hello again")
            log.warning("gateway %r takes over %d signals of the silent gateway %r", hello.gateway, len(names),
                        self.sessions[holder].name)
            replies.append(self._notice(holder, "signal_owned", detail, -1))
        if taken:
            detail = (f"{len(taken)} signals (e.g. {taken[0]!r}) belong to another gateway session; "
                      f"they are not yours until it has been silent for {self.config.stale_after_s:g} s")
            self._reject("signal_owned", f"gateway {hello.gateway!r}: {detail}", len(taken))
            replies.append(self._notice(sender, "signal_owned", detail, hello.seq))
        log.info("gateway %r (session %d): %d signals, %d lanes", hello.gateway, session.number,
                 int(owned.sum()), int((lanes >= 0).sum()))
        welcome = p.Welcome(self._next_seq(), wall_s, self.engine_id, self.controller_name, self.config.period_s,
                            unknown_signals, unknown_lanes, session.number, tuple(taken))
        return [(sender, p.encode(welcome))] + replies

    def merge_counts(self, session: _Session, message) -> list[tuple[str, str]]:
        """Merge a detector or camera frame's valid lanes; report the rest."""
        problems = []
        if message.lanes is not None:
            lanes = np.array([self.lane_index.get(lane, -1) for lane in message.lanes], dtype=np.int32)
        else:
            lanes = session.lanes
        if isinstance(message, p.DetectorMessage):
            values = (message.vehicles, message.halting, message.occupancy)
        else:
            values = (message.vehicles, message.queue, None)
            problems += self._sightings(message)
        sizes = {v.size for v in values if v is not None}
        if not sizes:
            return problems  # sightings only: lanes are not refreshed by a message without counts
        if sizes != {lanes.size}:
            self._reject("malformed", f"{sizes.pop()} values for {lanes.size} lanes")
            return [("malformed", f"per-lane arrays do not match the {lanes.size} lanes of the hello")]
        in_order = message.lanes is None and session.lanes_in_engine_order
        n_unknown = 0 if in_order else int(np.count_nonzero(lanes < 0))
        if message.lanes is not None and n_unknown:
            example = message.lanes[int(np.argmax(lanes < 0))]
            self._reject("unknown_id", f"{n_unknown} unknown lane ids, e.g. {example!r}", n_unknown)
            problems.append(("unknown_id", f"{n_unknown} lane ids not in the network"))
        # A late frame does not overwrite what a newer one said about the same lane.
        valid = np.empty(lanes.size, dtype=bool)
        if in_order and all(v is not None for v in values):
            self.kernels.merge_lanes_in_order(message.time_s, self.lane_capacity, *map(_readonly_f32, values),
                                              self._stores, self.lane_seen_s, valid)
        else:
            self.kernels.merge_lane_values(lanes, message.time_s, self.lane_capacity,
                                           tuple(_readonly_f32(v) for v in values), self._stores,
                                           _FIELD_BOUNDS, self.lane_seen_s, valid)
        n_bad = lanes.size - n_unknown - int(np.count_nonzero(valid))
        if n_bad:
            first_bad = int(np.argmax(~valid & (lanes >= 0)))
            lane = self.network.lane_ids[lanes[first_bad]]
            self._reject("invalid_value", f"{n_bad} lanes with NaN, negative or impossible counts, e.g. {lane!r}",
                         n_bad)
            problems.append(("invalid_value", f"{n_bad} lanes with NaN, negative or impossible values"))
        if isinstance(message, p.DetectorMessage):
            session.last_frame_seq = message.seq
            if self.config.clock == "frames":
                self.clock_s = max(self.clock_s, message.time_s)
        return problems

    def _sightings(self, message: p.CameraMessage) -> list[tuple[str, str]]:
        """Emergency vehicles, placed on the net's edges; a sighting that cannot be
        placed or routed is rejected alone."""
        problems = []
        edge_index = self.network.edge_index
        for sighting in message.emergency:
            name = sighting.vehicle_id
            edge = self.network.lane_edge_index(sighting.lane)
            route = tuple(edge_index.get(e, -1) for e in sighting.route)
            destination = -1 if sighting.destination is None else edge_index.get(sighting.destination, -1)
            if edge < 0 or -1 in route or (sighting.destination is not None and destination < 0):
                unknown = sighting.lane if edge < 0 else "its route" if -1 in route else sighting.destination
                detail = f"emergency vehicle {name!r}: unknown {unknown!r}"
            elif route and route[0] != edge:
                detail = f"emergency vehicle {name!r}: route does not start on the edge of lane {sighting.lane!r}"
            else:
                detail = None
            if detail:
                self._reject("unknown_id", detail)
                problems.append(("unknown_id", detail))
            elif not (0 <= sighting.position_m <= self.network.edge_length_m[edge] + 1.0
                      and 0 <= sighting.speed_mps < 100):
                detail = f"emergency vehicle {name!r}: position {sighting.position_m}, speed {sighting.speed_mps}"
                self._reject("invalid_value", detail)
                problems.append(("invalid_value", detail))
            elif name not in self.sightings or self.sightings[name].seen_s <= message.time_s:
                self.sightings[name] = EmergencyVehicle(name, edge, sighting.position_m, sighting.speed_mps, route,
                                                        destination, sighting.priority, message.time_s)
        return problems

    def _state(self, session: _Session, report: p.StateReport, wall_s: float) -> list[tuple[str, str]]:
        """Take over signal states from the gateway where it, not the engine, knows best:
        signals not commanded yet (a new session, an engine restart), all of them while it
        runs its own plan, and, once it has applied the latest command, those it shows
        otherwise (its guard refused a change) or has shown for less time than the engine counts."""
        if report.phase.size != session.signals.size:
            self._reject("malformed", f"state report for {report.phase.size} signals, hello had "
                         f"{session.signals.size}")
            return [("malformed", "state arrays do not match the hello's signals")]
        if report.rejected:
            self.metrics.command_rejections.inc(len(report.rejected))
        session.last_state_seq = report.seq
        safety = self.engine.safety
        # When the report was true, on the engine's clock: wall clock, when it arrived
        # (later than its own time_s, so never counting more time than has passed);
        # frames clock, its own time (the simulation's clock, which both share).
        at_s = wall_s if self.config.clock == "wall" else report.time_s
        # The next step adds a whole period to every stage time; the part of it that
        # had passed at_s is taken off now, so the step lands on the true stage time.
        lag_s = self.config.period_s - min(max(self.next_step_s - at_s, 0.0), self.config.period_s)
        idx = session.safe_signals
        reported_s = report.stage_time_s
        take = session.owned & ~session.synced
        if report.mode == "local":
            take = session.owned.copy()
        elif report.command_seq == session.last_command_seq >= 0:
            # Behind the engine's count: a gateway that applied the command late. In a
            # clearance every moment counts; a green's few ms of network latency do not.
            tolerance_s = np.where(report.stage == STAGE_GREEN, self.config.period_s / 4, _CLEARANCE_LATENCY_S)
            with np.errstate(invalid="ignore"):
                behind = reported_s - lag_s < safety.stage_time_s[idx] - tolerance_s
            take |= session.owned & session.synced & (
                (safety.green_phase[idx] != report.phase) | (safety.next_phase[idx] != report.next_phase)
                | (safety.stage[idx] != report.stage) | behind)
        # (Otherwise our latest command is still in flight; its state report will follow.)
        if not take.any():
            return []
        positions = np.flatnonzero(take)
        signals = session.signals[positions]
        phase = report.phase[positions].astype(np.int32)
        next_phase = report.next_phase[positions].astype(np.int32)
        stage = report.stage[positions].astype(np.int8)
        stage_time_s = reported_s[positions].copy()
        possible = safety.adopt(signals, phase, next_phase, stage, stage_time_s, lag_s)
        for k in np.flatnonzero(possible).tolist():
            self.guard.adopt(int(signals[k]), int(stage[k]), int(phase[k]), int(next_phase[k]),
                             float(stage_time_s[k]), at_s)
        session.synced[positions] = possible
        session.announce[positions] = possible
        self.metrics.resyncs.inc(int(possible.sum()))
        impossible = int((~possible).sum())
        if impossible:
            self._reject("invalid_value", f"gateway {session.name!r}: {impossible} impossible signal states", impossible)
            return [("invalid_value", f"{impossible} signal states name no phase or stage of that signal; "
                                      f"they get no commands until a possible one is reported")]
        return []

    # -- the control step --------------------------------------------------
    def step(self, wall_s: float) -> list[tuple[bytes, bytes]]:
        """One control period: decide, then one command message per gateway session
        that holds a signal whose state it has reported."""
        now = self._step_time(wall_s)
        self.next_step_s = now + self.config.period_s - 1e-9
        self.kernels.stale_signals(self.lane_seen_s, now, self.config.stale_after_s, self.signal_lane_ptr,
                                   self.signal_lanes, self.stale)
        self._expire_sightings(now)
        frame = DetectorFrame(now, self.vehicles, self.halting, self.occupancy, tuple(self.sightings.values()))
        started = time.perf_counter()
        commands = self.engine.step(frame, self.stale)
        decided = time.perf_counter() - started
        if self.live is not None:
            self._offer(frame, decided)
        changed = np.zeros(self.network.n_signals, dtype=bool)
        changed[commands.signals] = True
        out = []
        n_commanded = n_sent = 0
        for sender, session in self.sessions.items():
            controlled = session.owned & session.synced
            if not controlled.any():
                continue
            positions = np.flatnonzero(controlled & (changed[session.safe_signals] | session.announce))
            session.announce[:] = False
            sent, states = self._checked(session, positions, now)
            controlled = session.owned & session.synced     # a refused change leaves its signal unsynced
            n_commanded += int(controlled.sum())
            n_sent += len(states)
            command = p.SignalCommand(self._next_seq(), now, session.number, session.last_frame_seq,
                                      session.last_state_seq, *self._stages(session, controlled), sent, states,
                                      np.flatnonzero(controlled & self.engine.preempting[session.safe_signals])
                                      .astype(np.int32))
            session.last_command_seq = command.seq
            out.append((sender, p.encode(command)))
        self.metrics.commands.inc(n_sent)
        self.metrics.signals_commanded.set(n_commanded)
        self.metrics.command_messages.inc(len(out))
        return out

    def _checked(self, session: _Session, positions: np.ndarray, now: float) -> tuple[np.ndarray, tuple[str, ...]]:
        """The state strings for these positions of the session that pass the guard;
        a refused one is not sent, and its signal waits for the gateway's next report."""
        signals = session.signals[positions]
        states = self.engine.safety.state_strings(signals)
        keep = np.ones(positions.size, dtype=bool)
        for k, (signal, state) in enumerate(zip(signals.tolist(), states)):
            reason = self.guard.check(signal, state, now)
            if reason is None:
                self.guard.shown_now(signal, state, now)
                continue
            keep[k] = False
            session.synced[positions[k]] = False
            self.metrics.commands_refused.labels(reason).inc()
            self._log_once(f"refused:{reason}", "command for signal %r not sent (%s): %s after %s; it waits for "
                           "its gateway's next state report", self.network.signal_ids[signal], reason, state,
                           self.guard.shown[signal])
        return positions[keep].astype(np.int32), tuple(s for s, k in zip(states, keep) if k)

    def _stages(self, session: _Session, controlled: np.ndarray) -> tuple[np.ndarray, ...]:
        """The stage arrays of a command, in hello order; NOT_CONTROLLED where the engine does not command."""
        safety, idx = self.engine.safety, session.safe_signals
        phase, next_phase = safety.green_phase[idx], safety.next_phase[idx]
        stage, stage_time_s = safety.stage[idx], safety.stage_time_s[idx]
        if not controlled.all():
            phase[~controlled] = next_phase[~controlled] = p.NOT_CONTROLLED
            stage[~controlled] = 0
            stage_time_s[~controlled] = 0.0
        return phase, next_phase, stage, stage_time_s

    def _offer(self, frame: DetectorFrame, decision_s: float) -> None:
        engine, preemption = self.engine, self.engine.preemption
        kpis = {"queued_veh": float(self.halting.sum()), "decision_ms": decision_s * 1e3,
                "stale_signals": float(np.count_nonzero(self.stale))}
        self.live.offer(frame.time_s, engine.safety.green_phase, engine.safety.stage,
                        stale=self.stale | engine.on_plan_now(),
                        preempt=preemption.state if preemption else None,
                        serving=preemption.serving if preemption else None,
                        halting=self.halting, emergency=frame.emergency, kpis=kpis)

    def gateways_alive(self, mono_s: float) -> int:
        return sum(mono_s - s.last_seen_mono_s <= self.config.stale_after_s for s in self.sessions.values())

    def forget(self, sender: bytes) -> None:
        """End a gateway's session (it can no longer be reached, or says hello again); its signals are free."""
        session = self.sessions.pop(sender, None)
        if session is not None:
            for signal in session.signals[session.owned].tolist():
                self.owner[signal] = None

    # -- helpers -----------------------------------------------------------
    def _expire_sightings(self, now: float) -> None:
        expired = [vid for vid, s in self.sightings.items() if now - s.seen_s > self.sighting_ttl_s]
        for vid in expired:
            del self.sightings[vid]

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def refuse(self, sender: bytes, reason: str, detail: str, ref_seq: int = -1) -> list[tuple[bytes, bytes]]:
        """Count and log a rejection; returns the notice to send back."""
        self._reject(reason, detail)
        return [self._notice(sender, reason, detail, ref_seq)]

    def _notice(self, sender: bytes, reason: str, detail: str, ref_seq: int) -> tuple[bytes, bytes]:
        return sender, p.encode(p.ErrorNotice(self._next_seq(), self._reply_time_s, reason, detail, ref_seq))

    def _reject(self, reason: str, detail: str, count: int = 1) -> None:
        self.metrics.rejected.labels(reason).inc(count)
        self._log_once(reason, "rejected (%s): %s [further '%s' rejections are counted, not logged]", reason,
                       detail, reason)

    def _log_once(self, key: str, text: str, *args) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(text, *args)


# A gateway's report of a clearance counts from when it applied the command, a
# network latency after the engine's step: within this much the engine keeps its count.
_CLEARANCE_LATENCY_S = 0.01

# Fields merged from frames, in this order: vehicles, halting (camera: queue), occupancy.
# Bound 0: the lane's capacity; occupancy is a share of the lane, at most 1.
_FIELD_BOUNDS = np.array([0.0, 0.0, 1.0])
_ABSENT = np.zeros(0, dtype=np.float32)
_ABSENT.flags.writeable = False


def _readonly_f32(values: np.ndarray | None) -> np.ndarray:
    """One array type for every field of a frame (decoded arrays are read-only
    views of the message), so the merge kernel compiles once."""
    if values is None:
        return _ABSENT
    view = np.ascontiguousarray(values, dtype=np.float32).view()
    view.flags.writeable = False
    return view

# Message class -> `type` label of the received counter (one of telemetry.MESSAGE_TYPES).
_TYPE_LABEL = {"Hello": "hello", "DetectorMessage": "detector", "CameraMessage": "camera", "StateReport": "state",
               "Heartbeat": "heartbeat"}


def _signal_lanes(network: Network) -> tuple[np.ndarray, np.ndarray]:
    """CSR by signal of the lanes its decisions read directly: in- and out-lanes of its movements."""
    per_signal: list[set[int]] = [set() for _ in range(network.n_signals)]
    for signal, lane_in, lane_out in zip(network.move_signal, network.move_in_lane, network.move_out_lane):
        per_signal[signal].update((int(lane_in), int(lane_out)))
    lanes = [sorted(s) for s in per_signal]
    ptr = np.concatenate(([0], np.cumsum([len(x) for x in lanes]))).astype(np.int64)
    return ptr, np.array([lane for x in lanes for lane in x], dtype=np.int64)
