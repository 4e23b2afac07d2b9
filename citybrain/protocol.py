"""The wire protocol between field gateways and the engine (schema version 1).

Every message is one msgpack map with at least `v` (schema version), `type`,
`seq` (per-sender sequence number) and `time_s` (sender's clock). Numeric
arrays travel as raw little-endian bytes, never as msgpack lists: decoding a
10,000-lane frame is then one `np.frombuffer`, not 10,000 objects.
`docs/protocol.md` is the vendor's reference; this module is its executable form.

Only this module imports msgpack. Decoding never trusts its input: anything
that is not exactly a valid message raises `ProtocolError` with a `reason`
from `REJECT_REASONS`, which the engine counts.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import msgpack
import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "REJECT_REASONS",
    "ProtocolError",
    "Hello",
    "Welcome",
    "DetectorMessage",
    "CameraMessage",
    "EmergencySighting",
    "StateReport",
    "Heartbeat",
    "SignalCommand",
    "ErrorNotice",
    "Message",
    "encode",
    "decode",
    "write_record",
    "read_records",
]

SCHEMA_VERSION = 1

# Why a message (or part of one) was rejected; the label of the engine's rejection counter.
REJECT_REASONS = (
    "oversized",        # larger than the engine's max message size; not decoded
    "malformed",        # not msgpack, not a map, a missing or mistyped field, a bad array length
    "bad_version",      # schema version the engine does not speak
    "unknown_type",
    "unknown_gateway",  # a frame from a sender that has not said hello (or said it to an earlier engine)
    "unknown_id",       # a signal or lane id the network does not have (that id only)
    "invalid_value",    # NaN, negative or beyond physical bounds (that lane only)
    "duplicate",        # sequence number already seen from this sender
    "out_of_order",     # sequence number lower than one already seen
    "stale",            # timestamp too old to describe the present
    "future",           # timestamp too far ahead of the engine's clock
    "rate_limited",     # sender exceeded its message rate
    "signal_owned",     # a hello claimed signals another live gateway session holds (those signals only)
)

# What a gateway may send; anything else, engine-only types included, is `unknown_type`.
GATEWAY_TYPES = frozenset({"hello", "detector", "camera", "state", "heartbeat"})
# Stage arrays of a command carry this phase for a signal the engine does not
# control for that gateway (unknown, owned by another session, or state not yet reported).
NOT_CONTROLLED = -1

STAGES = ("green", "yellow", "all_red", "crossing")   # kernels.STAGE_* order


class ProtocolError(ValueError):
    """`seq` is the message's sequence number where it could be read, else -1."""

    def __init__(self, reason: str, detail: str, seq: int = -1):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.seq = seq


@dataclass(frozen=True)
class Hello:
    """Gateway -> engine: who I am and which signals and lanes I report, in which order.
    Frames without explicit `lanes` use this lane order; commands use this signal order."""

    seq: int
    time_s: float
    gateway: str
    signals: tuple[str, ...]
    lanes: tuple[str, ...]


@dataclass(frozen=True)
class Welcome:
    """Engine -> gateway: accepted. `engine_id` changes when the engine restarts;
    `session` numbers this hello's session, and every command for it carries it.
    `owned_signals`: signals of the hello that another live session holds."""

    seq: int
    time_s: float
    engine_id: str
    controller: str
    period_s: float
    unknown_signals: tuple[str, ...]
    unknown_lanes: tuple[str, ...]
    session: int = -1
    owned_signals: tuple[str, ...] = ()


@dataclass(frozen=True)
class DetectorMessage:
    """Gateway -> engine: loop / lane-area detector readings for lanes.

    Arrays are float32 per lane, in `lanes` order if given, else the hello's order.
    `halting` and `occupancy` may be absent (a loop that only counts)."""

    seq: int
    time_s: float
    lanes: tuple[str, ...] | None
    vehicles: np.ndarray
    halting: np.ndarray | None
    occupancy: np.ndarray | None


@dataclass(frozen=True)
class EmergencySighting:
    vehicle_id: str
    lane: str
    position_m: float          # from the start of `lane`
    speed_mps: float
    route: tuple[str, ...]     # edge ids ahead, current edge first; empty when unknown
    destination: str | None    # an edge id, when the route is not known
    priority: int              # lower is more urgent (1: life-threatening)


@dataclass(frozen=True)
class CameraMessage:
    """Gateway -> engine: camera counts per lane (queue = halting vehicles) and
    emergency-vehicle sightings."""

    seq: int
    time_s: float
    lanes: tuple[str, ...] | None
    queue: np.ndarray | None
    vehicles: np.ndarray | None
    emergency: tuple[EmergencySighting, ...]


@dataclass(frozen=True)
class StateReport:
    """Gateway -> engine, before every detector frame: what each signal (hello order)
    shows, as the engine's stage machine describes it, and the acknowledgement of
    the last command applied (`command_seq`, -1 before any). `mode` is "engine"
    while it follows commands, "local" while it runs its own fixed-time plan.
    `rejected` lists (signal index, reason) of commands its conflict guard refused."""

    seq: int
    time_s: float
    command_seq: int
    mode: str
    phase: np.ndarray          # int16: green phase shown, or being cleared from
    next_phase: np.ndarray     # int16: phase being cleared towards (meaningful in yellow/all-red)
    stage: np.ndarray          # uint8: 0 green, 1 yellow, 2 all-red, 3 crossing clearance
    stage_time_s: np.ndarray   # float64: time in the current stage
    rejected: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Heartbeat:
    seq: int
    time_s: float


@dataclass(frozen=True)
class SignalCommand:
    """Engine -> gateway, once per control period: the full stage state of every
    signal of the gateway (hello order) and the SUMO state strings of those whose
    display changed (`changed`: indices into the hello's signals).
    `frame_seq` is the seq of the last detector frame the decision used.
    `preempting`: signals (same indices) where an emergency preemption may end a
    green before its minimum green this period. A signal the engine does not
    control for this gateway has phase NOT_CONTROLLED and is never in `changed`.
    `session` is the welcome's: a command for another session is not for you.
    `state_seq` is the seq of the latest state report of this session the decision
    took into account (-1: none): a command decided before a gateway's own change
    reached the engine builds on a picture that is no longer true."""

    seq: int
    time_s: float
    session: int
    frame_seq: int
    state_seq: int
    phase: np.ndarray
    next_phase: np.ndarray
    stage: np.ndarray
    stage_time_s: np.ndarray
    changed: np.ndarray        # int32
    states: tuple[str, ...]
    preempting: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))


@dataclass(frozen=True)
class ErrorNotice:
    """Engine -> sender: a message of yours was rejected (`ref_seq`, -1 if unknown)."""

    seq: int
    time_s: float
    reason: str
    detail: str
    ref_seq: int


Message = Hello | Welcome | DetectorMessage | CameraMessage | StateReport | Heartbeat | SignalCommand | ErrorNotice

_F32, _F64, _I16, _I32, _U8 = (np.dtype(t) for t in ("<f4", "<f8", "<i2", "<i4", "u1"))


def encode(message: Message) -> bytes:
    """The msgpack bytes of a message."""
    body = {"v": SCHEMA_VERSION, "seq": message.seq, "time_s": message.time_s}
    if isinstance(message, Hello):
        body.update(type="hello", gateway=message.gateway, signals=list(message.signals), lanes=list(message.lanes))
    elif isinstance(message, Welcome):
        body.update(type="welcome", engine_id=message.engine_id, controller=message.controller,
                    period_s=message.period_s, session=message.session,
                    unknown_signals=list(message.unknown_signals), unknown_lanes=list(message.unknown_lanes),
                    owned_signals=list(message.owned_signals))
    elif isinstance(message, DetectorMessage):
        body.update(type="detector", vehicles=_pack(message.vehicles, _F32))
        _put_optional(body, "lanes", message.lanes)
        _put_array(body, "halting", message.halting, _F32)
        _put_array(body, "occupancy", message.occupancy, _F32)
    elif isinstance(message, CameraMessage):
        body.update(type="camera", emergency=[_sighting_body(s) for s in message.emergency])
        _put_optional(body, "lanes", message.lanes)
        _put_array(body, "queue", message.queue, _F32)
        _put_array(body, "vehicles", message.vehicles, _F32)
    elif isinstance(message, StateReport):
        body.update(type="state", command_seq=message.command_seq, mode=message.mode,
                    rejected=[[int(i), r] for i, r in message.rejected], **_stage_body(message))
    elif isinstance(message, Heartbeat):
        body.update(type="heartbeat")
    elif isinstance(message, SignalCommand):
        body.update(type="command", session=message.session, frame_seq=message.frame_seq,
                    state_seq=message.state_seq, changed=_pack(message.changed, _I32),
                    states=list(message.states), **_stage_body(message))
        if message.preempting.size:
            body["preempting"] = _pack(message.preempting, _I32)
    elif isinstance(message, ErrorNotice):
        body.update(type="error", reason=message.reason, detail=message.detail, ref_seq=message.ref_seq)
    else:
        raise TypeError(f"not a protocol message: {type(message).__name__}")
    return msgpack.packb(body, use_bin_type=True)


def decode(data: bytes, max_bytes: int | None = None, accept: frozenset[str] | None = None) -> Message:
    """Parse and validate one message of a type in `accept` (default: any); raises
    ProtocolError on anything else, carrying the message's `seq` where it could be read.
    Reasons are checked in this order: oversized, malformed (not a msgpack map),
    bad_version, unknown_type, malformed (a field)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise ProtocolError("oversized", f"{len(data)} bytes > limit {max_bytes}")
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=len(data),
                               max_str_len=len(data), max_array_len=len(data), max_map_len=len(data))
    except Exception as exc:  # msgpack raises many types on garbage; all mean the same here
        raise ProtocolError("malformed", f"not msgpack ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise ProtocolError("malformed", f"top level is {type(body).__name__}, not a map")
    seq = body.get("seq")
    readable_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else -1
    try:
        version = body.get("v")
        if version != SCHEMA_VERSION:
            raise ProtocolError("bad_version", f"schema version {version!r}, engine speaks {SCHEMA_VERSION}")
        kind = body.get("type")
        parser = _PARSERS.get(kind) if isinstance(kind, str) else None
        if parser is None or (accept is not None and kind not in accept):
            raise ProtocolError("unknown_type", f"message type {kind!r}")
        return parser(body, _int(body, "seq"), _number(body, "time_s"))
    except ProtocolError as exc:
        exc.seq = readable_seq
        raise


def write_record(stream: BinaryIO, direction: str, wall_s: float, data: bytes) -> None:
    """Append one message to a recording: [direction "in"/"out", wall time, raw bytes]."""
    stream.write(msgpack.packb([direction, wall_s, data], use_bin_type=True))


def read_records(path) -> Iterator[tuple[str, float, bytes]]:
    """The records of a recording, in order."""
    with open(path, "rb") as stream:
        for direction, wall_s, data in msgpack.Unpacker(stream, raw=False, max_buffer_size=2**31 - 1):
            yield direction, wall_s, data


def _parse_hello(body, seq, time_s) -> Hello:
    signals, lanes = _str_list(body, "signals"), _str_list(body, "lanes")
    for key, ids in (("signals", signals), ("lanes", lanes)):
        if len(set(ids)) != len(ids):
            repeated = next(i for i, n in Counter(ids).items() if n > 1)
            raise ProtocolError("malformed", f"{key!r} names {repeated!r} more than once")
    return Hello(seq, time_s, _str(body, "gateway"), signals, lanes)


def _parse_welcome(body, seq, time_s) -> Welcome:
    return Welcome(seq, time_s, _str(body, "engine_id"), _str(body, "controller"), _number(body, "period_s"),
                   _str_list(body, "unknown_signals"), _str_list(body, "unknown_lanes"), _int(body, "session"),
                   _str_list(body, "owned_signals"))


def _parse_detector(body, seq, time_s) -> DetectorMessage:
    lanes = _str_list(body, "lanes") if _given(body, "lanes") else None
    vehicles = _array(body, "vehicles", _F32)
    halting = _array(body, "halting", _F32) if _given(body, "halting") else None
    occupancy = _array(body, "occupancy", _F32) if _given(body, "occupancy") else None
    _same_length(vehicles, halting, occupancy, lanes)
    return DetectorMessage(seq, time_s, lanes, vehicles, halting, occupancy)


def _parse_camera(body, seq, time_s) -> CameraMessage:
    lanes = _str_list(body, "lanes") if _given(body, "lanes") else None
    queue = _array(body, "queue", _F32) if _given(body, "queue") else None
    vehicles = _array(body, "vehicles", _F32) if _given(body, "vehicles") else None
    _same_length(queue, vehicles, None, lanes)
    sightings = body.get("emergency") if _given(body, "emergency") else []
    if not isinstance(sightings, list):
        raise ProtocolError("malformed", "'emergency' is not a list")
    return CameraMessage(seq, time_s, lanes, queue, vehicles, tuple(_parse_sighting(s) for s in sightings))


def _parse_sighting(body) -> EmergencySighting:
    if not isinstance(body, dict):
        raise ProtocolError("malformed", "an emergency sighting is not a map")
    route = _str_list(body, "route") if _given(body, "route") else ()
    destination = _str(body, "destination") if _given(body, "destination") else None
    return EmergencySighting(_str(body, "id"), _str(body, "lane"), _number(body, "position_m"),
                             _number(body, "speed_mps"), route, destination, _int(body, "priority"))


def _parse_state(body, seq, time_s) -> StateReport:
    mode = _str(body, "mode")
    if mode not in ("engine", "local"):
        raise ProtocolError("malformed", f"mode {mode!r} is neither 'engine' nor 'local'")
    arrays = _stage_arrays(body)
    rejected = body.get("rejected") if _given(body, "rejected") else []
    if not isinstance(rejected, list) or not all(
            isinstance(r, list) and len(r) == 2 and isinstance(r[0], int) and isinstance(r[1], str) for r in rejected):
        raise ProtocolError("malformed", "'rejected' is not a list of [signal index, reason]")
    return StateReport(seq, time_s, _int(body, "command_seq"), mode, *arrays, tuple((i, r) for i, r in rejected))


def _parse_command(body, seq, time_s) -> SignalCommand:
    arrays = _stage_arrays(body)
    changed = _array(body, "changed", _I32)
    states = _str_list(body, "states")
    if changed.size != len(states):
        raise ProtocolError("malformed", "'changed' and 'states' differ in length")
    preempting = _array(body, "preempting", _I32) if _given(body, "preempting") else np.zeros(0, dtype=np.int32)
    if np.any(preempting < 0) or np.any(preempting >= arrays[0].size):
        raise ProtocolError("malformed", "'preempting' names a signal outside the command")
    if np.any(changed < 0) or np.any(changed >= arrays[0].size):
        raise ProtocolError("malformed", "'changed' names a signal outside the command")
    return SignalCommand(seq, time_s, _int(body, "session"), _int(body, "frame_seq"), _int(body, "state_seq"),
                         *arrays, changed, states, preempting)


def _parse_heartbeat(body, seq, time_s) -> Heartbeat:
    return Heartbeat(seq, time_s)


def _parse_error(body, seq, time_s) -> ErrorNotice:
    return ErrorNotice(seq, time_s, _str(body, "reason"), _str(body, "detail"), _int(body, "ref_seq"))


_PARSERS = {
    "hello": _parse_hello, "welcome": _parse_welcome, "detector": _parse_detector, "camera": _parse_camera,
    "state": _parse_state, "heartbeat": _parse_heartbeat, "command": _parse_command, "error": _parse_error,
}


# The per-signal stage state carried by both `state` and `command`, in field order.
_STAGE_FIELDS = (("phase", _I16), ("next_phase", _I16), ("stage", _U8), ("stage_time_s", _F64))


def _stage_body(message: StateReport | SignalCommand) -> dict:
    return {key: _pack(getattr(message, key), dtype) for key, dtype in _STAGE_FIELDS}


def _stage_arrays(body: dict) -> list[np.ndarray]:
    arrays = [_array(body, key, dtype) for key, dtype in _STAGE_FIELDS]
    if len({a.size for a in arrays}) != 1:
        raise ProtocolError("malformed", "stage arrays differ in length")
    return arrays


def _pack(array: np.ndarray, dtype: np.dtype) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _put_array(body: dict, key: str, array, dtype) -> None:
    if array is not None:
        body[key] = _pack(array, dtype)


def _put_optional(body: dict, key: str, values) -> None:
    if values is not None:
        body[key] = list(values)


def _sighting_body(s: EmergencySighting) -> dict:
    body = {"id": s.vehicle_id, "lane": s.lane, "position_m": s.position_m, "speed_mps": s.speed_mps,
            "priority": s.priority}
    if s.route:
        body["route"] = list(s.route)
    if s.destination is not None:
        body["destination"] = s.destination
    return body


def _given(body: dict, key: str) -> bool:
    """An optional field is given when present and not nil (nil means absent)."""
    return body.get(key) is not None


def _field(body: dict, key: str):
    try:
        return body[key]
    except KeyError:
        raise ProtocolError("malformed", f"missing field {key!r}") from None


def _int(body: dict, key: str) -> int:
    value = _field(body, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError("malformed", f"{key!r} is {type(value).__name__}, not an integer")
    return value


def _number(body: dict, key: str) -> float:
    value = _field(body, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ProtocolError("malformed", f"{key!r} is not a finite number")
    return float(value)


def _str(body: dict, key: str) -> str:
    value = _field(body, key)
    if not isinstance(value, str):
        raise ProtocolError("malformed", f"{key!r} is {type(value).__name__}, not a string")
    return value


def _str_list(body: dict, key: str) -> tuple[str, ...]:
    value = _field(body, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError("malformed", f"{key!r} is not a list of strings")
    return tuple(value)


def _array(body: dict, key: str, dtype: np.dtype) -> np.ndarray:
    value = _field(body, key)
    if not isinstance(value, bytes):
        raise ProtocolError("malformed", f"{key!r} is {type(value).__name__}, not raw bytes")
    if len(value) % dtype.itemsize:
        raise ProtocolError("malformed", f"{key!r} has {len(value)} bytes, not a multiple of {dtype.itemsize}")
    return np.frombuffer(value, dtype=dtype)


def _same_length(a, b, c, lanes) -> None:
    sizes = {x.size for x in (a, b, c) if x is not None}
    if lanes is not None:
        sizes.add(len(lanes))
    if len(sizes) > 1:
        raise ProtocolError("malformed", f"per-lane fields differ in length: {sorted(sizes)}")
