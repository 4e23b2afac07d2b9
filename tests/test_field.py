"""FieldEngine's logic, fed real protocol bytes: merging, rejection granularity,
stale-detector fallback to the fixed-time plan and back, state takeover, and
the gateway's command guard."""
import numpy as np
import pytest

from citybrain import protocol as p
from citybrain.config import PreemptionConfig, SignalTiming
from citybrain.controllers import make_controller
from citybrain.field import FieldConfig, FieldEngine
from citybrain.kernels import STAGE_GREEN
from citybrain.network import load_network
from citybrain.safety import CommandGuard
from citybrain.scenario import load_scenario

from .conftest import SHORT

GW = b"gateway-1"


@pytest.fixture(scope="module")
def net():
    return load_network(load_scenario(SHORT).net_file)


def make_field(net, **config):
    return FieldEngine(net, make_controller("citybrain", net), SignalTiming(),
                       FieldConfig(clock="frames", **config))


class Feed:
    """A well-behaved gateway speaking bytes to a FieldEngine."""

    def __init__(self, field, net, sender=GW, report=True):
        """As the protocol asks, a hello, then a report of what the signals show
        (here: each in its first phase's green for 30 s), unless `report` is False."""
        self.field, self.net, self.sender, self.seq = field, net, sender, 0
        self.send(p.Hello(self.next(), 0.0, "test", net.signal_ids, net.lane_ids))
        if report:
            self.report(0.0, phase=np.zeros(net.n_signals, np.int16))

    def report(self, time_s, phase, next_phase=None, stage=None, stage_time_s=None, mode="local", command_seq=-1):
        n = phase.size
        return self.send(p.StateReport(
            self.next(), time_s, command_seq, mode, phase,
            np.zeros(n, np.int16) if next_phase is None else next_phase,
            np.zeros(n, np.uint8) if stage is None else stage,
            np.full(n, 30.0) if stage_time_s is None else stage_time_s, rejected=()))

    def next(self):
        self.seq += 1
        return self.seq

    def send(self, message):
        return [p.decode(data) for _, data in self.field.receive(self.sender, p.encode(message), 0.0, 0.0)]

    def frame(self, time_s, vehicles=None, lanes=None):
        n = len(lanes) if lanes is not None else self.net.n_lanes
        vehicles = np.ones(n, np.float32) if vehicles is None else vehicles
        notices = self.send(p.DetectorMessage(self.next(), time_s, lanes, vehicles, vehicles * 0.5, vehicles * 0.01))
        commands = [p.decode(d) for _, d in self.field.step(0.0)] if self.field.step_due(0.0) else []
        return notices, commands


def rejected(field, reason):
    return field.metrics.registry.get_sample_value("citybrain_messages_rejected_total", {"reason": reason})


def test_bad_lanes_are_dropped_and_the_rest_of_the_frame_kept(net):
    field = make_field(net)
    feed = Feed(field, net)
    values = np.full(net.n_lanes, 2.0, np.float32)
    values[[3, 4, 5]] = [np.nan, -1.0, 1e6]
    notices, _ = feed.frame(0.0, values)
    assert [n.reason for n in notices] == ["invalid_value"]
    assert rejected(field, "invalid_value") == 3
    good = np.ones(net.n_lanes, bool)
    good[[3, 4, 5]] = False
    assert (field.vehicles[good] == 2.0).all() and (field.vehicles[[3, 4, 5]] == 0.0).all()


def test_a_frame_in_the_engines_lane_order_merges_as_one_in_any_other_order(net):
    """Lanes in the engine's order take the gather-free merge; the result is the same."""
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 4, net.n_lanes).astype(np.float32)
    values[[2, 9]] = [np.nan, -3.0]
    in_order, shuffled = make_field(net), make_field(net)
    Feed(in_order, net).frame(0.0, values)
    order = rng.permutation(net.n_lanes)
    feed = Feed(shuffled, net)
    feed.send(p.Hello(feed.next(), 0.0, "test", net.signal_ids, tuple(np.array(net.lane_ids)[order])))
    feed.frame(0.0, values[order])
    assert in_order.sessions[GW].lanes_in_engine_order and not shuffled.sessions[GW].lanes_in_engine_order
    for name in ("vehicles", "halting", "occupancy", "lane_seen_s"):
        np.testing.assert_array_equal(getattr(in_order, name), getattr(shuffled, name))
    assert rejected(in_order, "invalid_value") == rejected(shuffled, "invalid_value") == 2


def test_unknown_lane_ids_are_dropped_and_known_ones_merged(net):
    field = make_field(net)
    feed = Feed(field, net)
    lanes = (net.lane_ids[0], "no-such-lane", net.lane_ids[1])
    notices, _ = feed.frame(0.0, np.array([4, 5, 6], np.float32), lanes)
    assert [n.reason for n in notices] == ["unknown_id"]
    assert field.vehicles[0] == 4 and field.vehicles[1] == 6


def test_silent_detectors_fall_back_to_the_program_and_recover(net):
    field = make_field(net, stale_after_s=3.0)
    feed = Feed(field, net)
    silent = 4  # the centre signal of the 3x3 grid loses its detectors
    ptr, lanes = field.signal_lane_ptr, field.signal_lanes
    mine = set(lanes[ptr[silent]:ptr[silent + 1]].tolist())
    others = tuple(lane for i, lane in enumerate(net.lane_ids) if i not in mine)
    for t in range(5):
        feed.frame(float(t))
    assert not field.stale.any()
    safety = field.engine.safety
    first = int(net.phase_ptr[silent])
    phases_seen, switch_times = [], []
    for t in range(5, 200):
        feed.frame(float(t), lanes=others)
        if t > 8:
            assert field.stale[silent] and field.stale.sum() < net.n_signals
        if safety.stage[silent] == STAGE_GREEN and safety.stage_time_s[silent] == 0:
            phases_seen.append(int(safety.green_phase[silent]))
            switch_times.append(t)
    # The program's plan: candidate phases in program order; once back in step with the
    # program's cycle (within one cycle), each green starts where the cycle starts it.
    n_phases = int(net.phase_ptr[silent + 1]) - first
    assert len(set(phases_seen)) == n_phases
    assert all(b == (a + 1) % n_phases for a, b in zip(phases_seen, phases_seen[1:]))
    plan = slice(net.plan_ptr[silent], net.plan_ptr[silent + 1])
    window_start = dict(zip(net.plan_phase[plan].tolist(), (net.plan_end_s[plan] - net.plan_green_s[plan]).tolist()))
    cycle_s, offset_s = net.program_cycle_s[silent], net.program_offset_s[silent]
    in_step = [(t, phase) for t, phase in zip(switch_times, phases_seen) if t > 5 + cycle_s]
    assert len(in_step) >= n_phases
    for t, phase in in_step:
        assert (t - offset_s) % cycle_s == window_start[phase] % cycle_s, (t, phase)
    feed.frame(200.0)
    feed.frame(201.0)
    assert not field.stale.any()


def test_state_report_is_taken_over_by_a_fresh_engine_but_not_while_a_command_is_in_flight(net):
    field = make_field(net)
    feed = Feed(field, net, report=False)
    n = net.n_signals
    state = dict(phase=np.ones(n, np.int16), next_phase=np.zeros(n, np.int16),
                 stage=np.full(n, 1, np.uint8), stage_time_s=np.full(n, 1.0))
    feed.send(p.StateReport(feed.next(), 0.0, -1, "engine", **state, rejected=()))
    assert (field.engine.safety.green_phase == 1).all() and (field.engine.safety.stage == 1).all()
    _, commands = feed.frame(0.0)
    (command,) = commands
    # A report acknowledging an older command says nothing about the present.
    other = dict(state, phase=np.zeros(n, np.int16), stage=np.zeros(n, np.uint8))
    feed.send(p.StateReport(feed.next(), 0.5, command.seq - 1, "engine", **other, rejected=()))
    assert (field.engine.safety.stage == command.stage).all()
    # While the gateway runs its own plan, its report is the truth.
    feed.send(p.StateReport(feed.next(), 0.5, command.seq - 1, "local", **other, rejected=()))
    assert (field.engine.safety.stage == 0).all()


def test_impossible_reported_states_are_refused(net):
    field = make_field(net)
    feed = Feed(field, net, report=False)
    n = net.n_signals
    notices = feed.send(p.StateReport(feed.next(), 0.0, -1, "local", phase=np.full(n, 99, np.int16),
                                      next_phase=np.zeros(n, np.int16), stage=np.zeros(n, np.uint8),
                                      stage_time_s=np.zeros(n), rejected=()))
    assert [x.reason for x in notices] == ["invalid_value"]
    assert (field.engine.safety.green_phase < 99).all()


def test_command_guard_refuses_unsafe_changes(net):
    guard = CommandGuard(net)
    signal = 0
    first = int(net.phase_ptr[signal])
    green_a, green_b = net.phase_states[first], net.phase_states[first + 1]
    guard.shown_now(signal, green_a, 0.0)
    assert guard.check(signal, green_b, 10.0) == "missing_yellow"
    yellow = net.signal_state(signal, 1, 0, 1)
    assert guard.check(signal, yellow, 10.0) is None
    guard.shown_now(signal, yellow, 10.0)
    all_red = net.signal_state(signal, 2, 0, 1)
    assert guard.check(signal, all_red, 10.0 + net.yellow_s[signal] - 1) == "short_yellow"
    assert guard.check(signal, all_red, 10.0 + net.yellow_s[signal]) is None
    conflicting = "".join("G" if a in "Gg" or b in "Gg" else a for a, b in zip(green_a, green_b))
    assert guard.check(signal, conflicting, 20.0) == "conflicting_green"
    assert guard.check(signal, "G", 20.0) == "bad_state"


WEST_EAST = ("left1A1", "left1A1.140.00", "A1B1", "A1B1.140.00", "B1C1", "B1C1.140.00", "C1right1")


def sighting(vehicle_id="amb", lane="left1A1_0", position_m=60.0, route=WEST_EAST, destination=None):
    return p.EmergencySighting(vehicle_id, lane, position_m, 13.9, route, destination, 1)


def test_emergency_sightings_are_validated_one_by_one_and_preempt(net):
    field = make_field(net)
    feed = Feed(field, net)
    feed.frame(0.0)
    notices = feed.send(p.CameraMessage(feed.next(), 1.0, None, None, None, (
        sighting(),
        sighting("ghost", lane="nowhere_0"),
        sighting("lost", route=("left1A1", "no-such-edge")),
        sighting("detour", lane="A1B1_0"),                    # route does not start where it is
        sighting("flying", position_m=1e5),
        sighting("by-destination", lane="right1C1_1", route=(), destination="A1left1"),
    )))
    assert sorted(n.reason for n in notices) == ["invalid_value", "unknown_id", "unknown_id", "unknown_id"]
    assert rejected(field, "unknown_id") == 3 and rejected(field, "invalid_value") == 1
    assert set(field.sightings) == {"amb", "by-destination"}
    # A message with sightings only does not refresh any lane's detector data.
    assert field.lane_seen_s.max() == 0.0

    _, commands = feed.frame(1.0)
    preemption = field.engine.preemption
    assert set(preemption.tracks) == {"amb", "by-destination"}
    first_signal = net.signal_ids.index("A1")
    assert preemption.state[first_signal] != 0
    assert first_signal in commands[0].preempting.tolist() or preemption.state[first_signal] == 2


def test_emergency_sightings_expire(net):
    field = make_field(net)
    feed = Feed(field, net)
    feed.send(p.CameraMessage(feed.next(), 0.0, None, None, None, (sighting(),)))
    feed.frame(0.0)      # the first step only commands every signal
    feed.frame(1.0)
    assert field.sightings and field.engine.preemption.tracks
    for t in range(2, int(PreemptionConfig().drop_after_s) + 2):
        feed.frame(float(t))
    assert not field.sightings and not field.engine.preemption.tracks


def test_preemption_shows_in_metrics(net):
    field = make_field(net)
    feed = Feed(field, net)
    feed.frame(0.0)
    feed.send(p.CameraMessage(feed.next(), 1.0, None, None, None, (sighting(),)))
    feed.frame(1.0)
    value = field.metrics.registry.get_sample_value
    assert value("citybrain_emergency_vehicles") == 1
    assert value("citybrain_preempted_signals") >= 1
    assert value("citybrain_preemption_entries_total") >= 1
    assert value("citybrain_preemption_timeouts_total") == 0
    assert value("citybrain_preemption_stalls_total") == 0


def messages(replies, recipient=None):
    return [p.decode(data) for to, data in replies if recipient is None or to == recipient]


def test_no_command_for_a_signal_before_its_gateway_reported_it(net):
    field = make_field(net)
    feed = Feed(field, net, report=False)
    for t in range(5):
        _, commands = feed.frame(float(t))
        assert commands == []                       # nothing is known of what the signals show
    # Half the signals reported: those, and only those, are commanded from exactly the reported state.
    n, half = net.n_signals, net.n_signals // 2
    phase = np.zeros(n, np.int16)
    phase[half:] = 99                               # impossible: those stay uncommanded
    notices = feed.report(5.0, phase=phase, stage_time_s=np.full(n, 2.0))
    assert [x.reason for x in notices] == ["invalid_value"]
    _, (command,) = feed.frame(5.0)
    assert (command.phase[half:] == p.NOT_CONTROLLED).all() and (command.phase[:half] >= 0).all()
    assert set(command.changed.tolist()) == set(range(half))      # the first command announces each
    assert np.allclose(command.stage_time_s[:half][command.stage[:half] == 0], 2.0)


def test_a_yellow_reported_mid_way_is_completed_in_full(net):
    field = make_field(net)
    feed = Feed(field, net, report=False)
    n = net.n_signals
    feed.report(100.0, phase=np.zeros(n, np.int16), next_phase=np.ones(n, np.int16), stage=np.ones(n, np.uint8),
                stage_time_s=np.full(n, 1.0), mode="engine")
    yellow_began_s = 99.0
    guard = CommandGuard(net)
    for signal in range(n):
        guard.adopt(signal, 1, 0, 1, 1.0, 100.0)
    ended = {}
    for t in np.arange(100.0, 110.0, 1.0):
        for command in feed.frame(float(t))[1]:
            for signal, state in zip(command.changed.tolist(), command.states):
                assert guard.check(signal, state, t) is None, (signal, state)
                guard.shown_now(signal, state, t)
                if "y" not in state:
                    ended.setdefault(signal, t)
    assert len(ended) == n
    assert all(t - yellow_began_s >= net.yellow_s[s] for s, t in ended.items())
    assert field.metrics.registry.get_sample_value("citybrain_commands_refused_total",
                                                   {"reason": "short_yellow"}) == 0


def test_a_signal_belongs_to_one_session_until_it_falls_silent(net):
    field = make_field(net, stale_after_s=5.0)
    first = Feed(field, net, sender=b"first")
    first.frame(0.0)
    second = Feed(field, net, sender=b"second", report=False)
    before = rejected(field, "signal_owned")
    claim = second.send(p.Hello(second.next(), 0.0, "second", net.signal_ids[:3], ()))
    welcome, notice = claim
    assert isinstance(welcome, p.Welcome) and welcome.owned_signals == net.signal_ids[:3]
    assert notice.reason == "signal_owned" and notice.ref_seq == second.seq
    assert rejected(field, "signal_owned") - before == 3
    # The second session's reports change nothing, and it gets no command.
    n3 = np.zeros(3, np.int16)
    second.send(p.StateReport(second.next(), 0.5, -1, "local", n3 + 1, n3, n3.astype(np.uint8), np.zeros(3), ()))
    assert (field.engine.safety.green_phase[:3] == 0).all() or (field.engine.safety.stage[:3] != 0).any()
    ones = np.ones(net.n_lanes, np.float32)
    first.send(p.DetectorMessage(first.next(), 1.0, None, ones, ones, ones / 100))  # (a hello restarts the frames clock)
    replies = field.step(0.0)
    assert {to for to, _ in replies} == {b"first"}
    # The first falls silent past stale_after_s: a new claim moves the signals, and the first is told.
    later = field.receive(b"second", p.encode(p.Hello(second.next(), 0.0, "second", net.signal_ids[:3], ())),
                          0.0, 6.0)
    (welcome,), told = messages(later, b"second"), messages(later, b"first")
    assert welcome.owned_signals == () and [x.reason for x in told] == ["signal_owned"]
    assert field.metrics.registry.get_sample_value("citybrain_ownership_moves_total") == 3
    first.send(p.DetectorMessage(first.next(), 2.0, None, ones, ones, ones / 100))
    first_command = messages(field.step(0.0), b"first")[0]
    assert (first_command.phase[:3] == p.NOT_CONTROLLED).all() and (first_command.phase[3:] >= 0).all()


def test_the_engine_does_not_send_a_change_its_own_guard_refuses(net):
    """An engine-side fault (here: a stage machine forced from green to all-red) is
    caught before it leaves: not sent, counted, and the signal waits for a report."""
    field = make_field(net)
    feed = Feed(field, net)
    feed.frame(0.0)
    safety = field.engine.safety
    signal = 0
    safety.stage[signal], safety.next_phase[signal] = 2, (safety.green_phase[signal] + 1) % 2   # all-red, no yellow
    safety.stage_time_s[signal] = 0.0
    safety.changed[:] = False
    _, (command,) = feed.frame(1.0)
    refused = field.metrics.registry.get_sample_value("citybrain_commands_refused_total", {"reason": "missing_yellow"})
    assert refused == 1 and signal not in command.changed.tolist() and command.phase[signal] == p.NOT_CONTROLLED
    feed.report(1.5, phase=np.zeros(net.n_signals, np.int16), mode="engine", command_seq=command.seq)
    _, (command,) = feed.frame(2.0)
    assert command.phase[signal] >= 0


def test_the_supervisor_shows_in_metrics(net):
    field = make_field(net)
    Feed(field, net).frame(0.0)
    registry = field.metrics.registry
    assert registry.get_sample_value("citybrain_supervisor_handovers_total") == 0
    assert registry.get_sample_value("citybrain_supervised_on_plan", {"reason": "starved"}) == 0
    supervisor = field.engine.supervisor
    supervisor.plan_until_s[2], supervisor.reason[2] = np.inf, 2       # as if handed back for spill-back
    supervisor.on_plan[2] = True
    assert registry.get_sample_value("citybrain_supervised_on_plan", {"reason": "spill_back"}) == 1
    assert registry.get_sample_value("citybrain_signal_on_plan", {"signal": net.signal_ids[2],
                                                                  "reason": "spill_back"}) == 1
