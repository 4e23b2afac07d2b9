"""The wire protocol: every message round-trips; the decoder survives anything."""
import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain import protocol as p

F32 = np.array([0.0, 1.5, 7.0], dtype=np.float32)
STATE = dict(phase=np.array([0, 2], np.int16), next_phase=np.array([1, 0], np.int16),
             stage=np.array([1, 0], np.uint8), stage_time_s=np.array([2.0, 13.5]))

MESSAGES = [
    p.Hello(1, 10.0, "gw", ("A", "B"), ("a_0", "b_0", "c_0")),
    p.Welcome(2, 10.0, "abc123", "citybrain", 1.0, ("X",), (), 3, ("B",)),
    p.DetectorMessage(3, 11.0, None, F32, F32, F32 / 10),
    p.DetectorMessage(4, 11.0, ("a_0", "b_0", "c_0"), F32, None, None),
    p.CameraMessage(5, 11.0, ("a_0", "b_0", "c_0"), F32, F32, (
        p.EmergencySighting("amb1", "a_0", 12.5, 13.9, ("a", "b"), None, 1),
        p.EmergencySighting("amb2", "b_0", 0.0, 0.0, (), "c", 2))),
    p.StateReport(6, 12.0, 5, "engine", **STATE, rejected=((1, "missing_yellow"),)),
    p.Heartbeat(7, 12.0),
    p.SignalCommand(8, 12.0, 3, 4, 6, **STATE, changed=np.array([1], np.int32), states=("GGrr",)),
    p.SignalCommand(8, 12.0, 3, 4, 6, **STATE, changed=np.array([1], np.int32), states=("GGrr",),
                    preempting=np.array([0], np.int32)),
    p.ErrorNotice(9, 12.0, "stale", "too old", 3),
]


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    for key, x in vars(a).items():
        y = vars(b)[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    assert same(p.decode(p.encode(message)), message)


def test_arrays_are_raw_little_endian_bytes():
    body = msgpack.unpackb(p.encode(MESSAGES[2]))
    assert body["v"] == p.SCHEMA_VERSION and body["type"] == "detector"
    assert body["vehicles"] == np.array([0, 1.5, 7], "<f4").tobytes()


def reason_of(data: bytes, **kwargs) -> str:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(data, **kwargs)
    return caught.value.reason


def test_each_kind_of_bad_message_has_its_reason():
    good = msgpack.unpackb(p.encode(MESSAGES[2]))
    assert reason_of(b"\xc1garbage") == "malformed"
    assert reason_of(msgpack.packb([1, 2, 3])) == "malformed"
    assert reason_of(msgpack.packb({**good, "v": 99})) == "bad_version"
    assert reason_of(msgpack.packb({**good, "type": "teleport"})) == "unknown_type"
    assert reason_of(msgpack.packb({**good, "vehicles": [1.0, 2.0, 3.0]})) == "malformed"
    assert reason_of(msgpack.packb({**good, "vehicles": b"\x00" * 7})) == "malformed"
    assert reason_of(msgpack.packb({**good, "halting": b"\x00" * 8})) == "malformed"   # 2 values for 3 lanes
    assert reason_of(msgpack.packb({k: v for k, v in good.items() if k != "seq"})) == "malformed"
    assert reason_of(msgpack.packb({**good, "time_s": float("nan")})) == "malformed"
    assert reason_of(p.encode(MESSAGES[2]), max_bytes=10) == "oversized"
    hello = msgpack.unpackb(p.encode(MESSAGES[0]))
    assert reason_of(msgpack.packb({**hello, "signals": ["A", "B", "A"]})) == "malformed"
    assert reason_of(msgpack.packb({**hello, "lanes": ["a_0", "a_0"]})) == "malformed"


def test_nil_in_an_optional_field_means_absent():
    body = msgpack.unpackb(p.encode(MESSAGES[2]))
    message = p.decode(msgpack.packb({**body, "lanes": None, "halting": None, "occupancy": None}))
    assert message.lanes is None and message.halting is None and message.occupancy is None
    assert reason_of(msgpack.packb({**body, "vehicles": None})) == "malformed"      # required
    assert p.decode(msgpack.packb({**body, "time_s": 11})).time_s == 11.0           # an integer time is a time


def test_a_rejection_carries_the_seq_wherever_it_can_be_read():
    good = msgpack.unpackb(p.encode(MESSAGES[2]))
    for bad, reason in (({**good, "v": 2}, "bad_version"), ({**good, "type": "teleport"}, "unknown_type"),
                        ({**good, "vehicles": [1.0]}, "malformed"), ({**good, "time_s": "noon"}, "malformed")):
        with pytest.raises(p.ProtocolError) as caught:
            p.decode(msgpack.packb({**bad, "seq": 41}))
        assert (caught.value.reason, caught.value.seq) == (reason, 41)
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(msgpack.packb({**good, "seq": "41"}))
    assert caught.value.seq == -1
    # An engine-only type sent to the engine is of a type it does not take, not malformed.
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(msgpack.packb({"v": 1, "type": "command", "seq": 5, "time_s": 1.0}), accept=p.GATEWAY_TYPES)
    assert (caught.value.reason, caught.value.seq) == ("unknown_type", 5)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_survives_random_bytes(data):
    try:
        p.decode(data, max_bytes=200)
    except p.ProtocolError as exc:
        assert exc.reason in p.REJECT_REASONS


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(MESSAGES), st.dictionaries(st.sampled_from(
    ["v", "type", "seq", "time_s", "lanes", "vehicles", "halting", "phase", "changed", "states", "emergency",
     "mode", "rejected", "signals", "gateway", "command_seq", "frame_seq"]), msgpack_values, max_size=3))
def test_decoder_survives_mutated_valid_messages(message, overrides):
    """Valid messages with fields replaced by arbitrary msgpack values: either a
    well-formed message comes out, or a ProtocolError; never anything else."""
    body = {**msgpack.unpackb(p.encode(message)), **overrides}
    try:
        decoded = p.decode(msgpack.packb(body, use_bin_type=True))
    except p.ProtocolError as exc:
        assert exc.reason in p.REJECT_REASONS
    else:
        assert isinstance(decoded, type(message)) or overrides.get("type") is not None
