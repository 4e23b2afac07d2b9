"""The gateway contract of docs/protocol.md, against a live engine on loopback.

`PageGateway` is a gateway written from the protocol page: hello, welcome,
a state report of what its signals show, then per period a state report and
a detector frame, applying the command answering that frame through its own
conflict monitor (`CommandGuard`, judged on the command's clock). Every test
counts the commands that monitor refuses: there must be none."""
import queue
import threading
import time

import numpy as np
import pytest
import zmq

from citybrain import protocol as p
from citybrain.field import FieldConfig
from citybrain.network import load_network
from citybrain.safety import CommandGuard
from citybrain.scenario import load_scenario
from citybrain.server import ServeOptions, serve

from .conftest import SHORT
from .test_wire import rejections, scrape

PERIOD_S = 0.1


@pytest.fixture(scope="module")
def net():
    return load_network(load_scenario(SHORT).net_file)


def start_engine(net, period_s=PERIOD_S, stale_after_s=5.0):
    stop, ready = threading.Event(), queue.Queue()
    options = ServeOptions(bind="tcp://127.0.0.1:*", metrics_port=0,
                           field=FieldConfig(period_s=period_s, clock="wall", stale_after_s=stale_after_s))
    thread = threading.Thread(target=serve, args=(net, options, stop, lambda e, port, _: ready.put((e, port))),
                              daemon=True)
    thread.start()
    endpoint, port = ready.get(timeout=120)
    return stop, thread, endpoint, port


@pytest.fixture
def engine(net):
    stop, thread, endpoint, port = start_engine(net)
    yield endpoint, port
    stop.set()
    thread.join(10)


class PageGateway:
    def __init__(self, endpoint, net, signals=None, name="page", routing_id=None, context=None):
        self.net = net
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if routing_id is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock.connect(endpoint)
        self.signal_ids = tuple(net.signal_ids if signals is None else signals)
        self.index = np.array([net.signal_ids.index(s) for s in self.signal_ids], dtype=np.int32)
        self.name = name
        self.seq = 0
        self.session = -1
        self.command_seq = -1
        self.guard = CommandGuard(net)
        n = len(self.signal_ids)
        self.phase, self.next_phase = np.zeros(n, np.int16), np.zeros(n, np.int16)
        self.stage, self.stage_time_s = np.zeros(n, np.uint8), np.full(n, 30.0)
        self.as_of_s = time.time()
        self.own_change_seq = 0    # commands decided before our report of this seq are stale
        self.mode = "local"        # until the engine has taken what we show
        self.refused = []          # (signal, state, reason) our monitor refused
        self.notices = []
        self.commands = 0
        self.changes = 0           # changes applied

    def next(self):
        self.seq += 1
        return self.seq

    def send(self, message):
        self.sock.send(p.encode(message))

    def receive(self, timeout_s):
        if not self.sock.poll(timeout_s * 1000):
            return None
        message = p.decode(self.sock.recv())
        if isinstance(message, p.ErrorNotice):
            self.notices.append(message)
        return message

    def hello(self, timeout_s=5.0):
        sent_s = time.monotonic()
        self.send(p.Hello(self.next(), time.time(), self.name, self.signal_ids, ()))
        deadline = sent_s + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.receive(remaining)
            if isinstance(message, p.Welcome):
                self.session, self.command_seq = message.session, -1
                return message, time.monotonic() - sent_s
        raise AssertionError("no welcome")

    def show(self, phase, next_phase, stage, stage_time_s):
        """We changed what our signals show ourselves (our own plan, a restart mid-way)."""
        self.phase[:], self.next_phase[:], self.stage[:], self.stage_time_s[:] = phase, next_phase, stage, stage_time_s
        self.as_of_s = time.time()
        self.mode, self.own_change_seq = "local", self.seq + 1

    def report(self):
        now = time.time()
        times = self.stage_time_s + (now - self.as_of_s)
        if self.mode == "local":   # our monitor takes what we ourselves put on the signals
            for k, signal in enumerate(self.index.tolist()):
                self.guard.adopt(signal, int(self.stage[k]), int(self.phase[k]), int(self.next_phase[k]),
                                 float(times[k]), now)
        self.send(p.StateReport(self.next(), now, self.command_seq, self.mode, self.phase, self.next_phase,
                                self.stage, times, ()))

    def period(self, timeout_s=1.0):
        """State report and an (empty) detector frame; apply our session's commands in
        order up to the one answering it, which is returned."""
        self.report()
        frame_seq = self.next()
        self.send(p.DetectorMessage(frame_seq, time.time(), None, np.zeros(0, np.float32), None, None))
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.receive(remaining)
            if isinstance(message, p.SignalCommand) and message.session == self.session \
                    and message.state_seq >= self.own_change_seq:
                self.apply(message)
                if message.frame_seq == frame_seq:
                    return message
        return None

    def apply(self, command):
        self.commands += 1
        self.command_seq, self.mode = command.seq, "engine"
        for position, state in zip(command.changed.tolist(), command.states):
            signal = int(self.index[position])
            reason = self.guard.check(signal, state, command.time_s)
            if reason:
                self.refused.append((self.signal_ids[position], state, reason))
            else:
                self.guard.shown_now(signal, state, command.time_s)
                self.changes += 1
        mine = command.phase != p.NOT_CONTROLLED
        for ours, theirs in ((self.phase, command.phase), (self.next_phase, command.next_phase),
                             (self.stage, command.stage), (self.stage_time_s, command.stage_time_s)):
            ours[mine] = theirs[mine]
        self.stage_time_s[~mine] += command.time_s - self.as_of_s
        self.as_of_s = command.time_s

    def close(self):
        self.sock.close(0)


def test_hello_without_state_gets_no_command(engine, net):
    endpoint, _ = engine
    gateway = PageGateway(endpoint, net)
    gateway.hello()
    deadline = time.monotonic() + 10 * PERIOD_S
    while (remaining := deadline - time.monotonic()) > 0:
        message = gateway.receive(remaining)
        assert not isinstance(message, p.SignalCommand), "a command before any state report"
    # Once it reports, it is commanded from there.
    command = gateway.period()
    assert command is not None and (command.phase >= 0).all() and not gateway.refused
    gateway.close()


def test_restarted_engine_completes_a_yellow_under_way(net):
    """The gateway was mid-yellow when its engine died; the new engine finishes the yellow in full."""
    stop, thread, endpoint, port = start_engine(net)
    try:
        gateway = PageGateway(endpoint, net)
        gateway.hello()
        n = net.n_signals
        gateway.show(np.zeros(n), np.ones(n), np.ones(n), np.full(n, 0.5))   # 0.5 s into every yellow
        yellow_began_s = time.time() - 0.5
        ended = {}
        for _ in range(int(8 / PERIOD_S)):
            command = gateway.period()
            if command is None:
                continue
            for position, state in zip(command.changed.tolist(), command.states):
                if "y" not in state:
                    ended.setdefault(position, command.time_s)
            if len(ended) == n:
                break
        assert len(ended) == n and not gateway.refused, gateway.refused
        for position, ended_s in ended.items():
            assert ended_s - yellow_began_s >= net.yellow_s[gateway.index[position]] - 1e-6
        refused = sum(v for (name, labels), v in scrape(port).items() if name == "citybrain_commands_refused_total")
        assert refused == 0
        gateway.close()
    finally:
        stop.set()
        thread.join(10)


def test_a_second_gateway_cannot_take_signals_held_by_a_live_one(engine, net):
    endpoint, port = engine
    first = PageGateway(endpoint, net, name="first")
    first.hello()
    for _ in range(5):
        assert first.period() is not None
    before = rejections(port)["signal_owned"]
    second = PageGateway(endpoint, net, signals=net.signal_ids[:3], name="second")
    welcome, _ = second.hello()
    assert welcome.owned_signals == net.signal_ids[:3]
    assert second.receive(1.0).reason == "signal_owned"
    assert rejections(port)["signal_owned"] - before == 3
    # The second reports another green everywhere; it is not commanded, and the first is unaffected.
    second.show(np.ones(3), np.zeros(3), np.zeros(3), np.full(3, 20.0))
    for _ in range(20):
        command = second.period(timeout_s=PERIOD_S)
        assert command is None or (command.phase == p.NOT_CONTROLLED).all()
        command = first.period()
        assert command is not None and (command.phase >= 0).all()
    assert not first.refused and not second.refused
    first.close()
    second.close()


def test_immediate_reconnect_under_the_same_routing_id(net):
    """50 times: close, reconnect at once under the same id, hello: answered within a
    period, and never a command of the old session taken for the new one's."""
    period_s = 0.5
    stop, thread, endpoint, _ = start_engine(net, period_s=period_s)
    context = zmq.Context()
    try:
        for attempt in range(50):
            gateway = PageGateway(endpoint, net, routing_id=b"cabinet-7", context=context)
            welcome, waited_s = gateway.hello(timeout_s=5.0)
            assert waited_s < period_s, (attempt, waited_s)
            command = gateway.period(timeout_s=3 * period_s)
            assert command is None or command.session == welcome.session
            assert not gateway.refused
            gateway.close()
    finally:
        context.term()
        stop.set()
        thread.join(10)


def test_hostile_gateway_for_60_s_beside_a_good_one(engine, net):
    """A hostile gateway sends random but well-formed hellos, states and frames for 60 s;
    the good one runs beside it. Neither ever receives a command its monitor refuses."""
    endpoint, port = engine
    half = net.signal_ids[: net.n_signals // 2]
    good = PageGateway(endpoint, net, signals=half, name="good")
    good.hello()
    rng = np.random.default_rng(23)
    failures, hostile_changes = [], []

    def hostile_loop(until_s):
        gateway = None
        while time.monotonic() < until_s:
            if gateway is None or rng.random() < 0.05:     # a new hello, for random signals
                if gateway is not None:
                    failures.extend(gateway.refused)
                    hostile_changes.append(gateway.changes)
                    gateway.close()
                signals = tuple(rng.choice(net.signal_ids, int(rng.integers(1, net.n_signals + 1)), replace=False))
                gateway = PageGateway(endpoint, net, signals=signals, name="hostile")
                gateway.hello()
            n = len(gateway.signal_ids)
            if rng.random() < 0.3:                         # claims to show something else
                phases = np.diff(net.phase_ptr)[gateway.index]
                phase = rng.integers(0, phases)
                next_phase = rng.integers(0, phases)
                stage = rng.integers(0, 4, n)
                stage[phase == next_phase] = 0
                gateway.show(phase, next_phase, stage, rng.uniform(0, 40, n))
            if rng.random() < 0.2:                         # a frame of random counts for random lanes
                lanes = tuple(rng.choice(net.lane_ids, 5, replace=False))
                gateway.send(p.DetectorMessage(gateway.next(), time.time(), lanes,
                                               rng.uniform(-5, 50, 5).astype(np.float32), None, None))
            gateway.period(timeout_s=3 * PERIOD_S)
        failures.extend(gateway.refused)
        hostile_changes.append(gateway.changes)
        gateway.close()

    until = time.monotonic() + 60
    hostile = threading.Thread(target=hostile_loop, args=(until,), daemon=True)
    hostile.start()
    answered = 0
    while time.monotonic() < until:
        answered += good.period() is not None
    hostile.join(30)
    assert not hostile.is_alive()
    assert not good.refused and not failures, (good.refused[:3], failures[:3])
    assert answered > 100 and rejections(port)["signal_owned"] > 0
    assert good.changes > 0 and sum(hostile_changes) > 0     # both were commanded, not just refused
    refused = sum(v for (name, labels), v in scrape(port).items() if name == "citybrain_commands_refused_total")
    assert refused == 0
    good.close()
