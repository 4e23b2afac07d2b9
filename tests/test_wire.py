"""Field mode over real ZeroMQ on loopback: a running engine under every kind of
bad input, SUMO through the wire against SUMO in-process, an engine killed
mid-run, record and replay, clean shutdown."""
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import msgpack
import numpy as np
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from citybrain import protocol as p
from citybrain.field import FieldConfig
from citybrain.network import load_network
from citybrain.scenario import load_scenario
from citybrain.server import ServeOptions, serve

from .conftest import ROOT, SHORT
from .test_cli import KEYS, citybrain


@pytest.fixture(scope="module")
def net():
    return load_network(load_scenario(SHORT).net_file)


def scrape(port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def rejections(port: int) -> dict:
    return {dict(labels)["reason"]: v for (name, labels), v in scrape(port).items()
            if name == "citybrain_messages_rejected_total"}


@pytest.fixture
def running_engine(net):
    """`serve` in a thread: wall clock at 10 Hz, small limits so they are easy to hit."""
    stop, ready = threading.Event(), queue.Queue()
    options = ServeOptions(bind="tcp://127.0.0.1:*", metrics_port=0,
                           field=FieldConfig(period_s=0.1, clock="wall", max_message_bytes=64 * 1024,
                                             max_messages_per_s=2000))
    thread = threading.Thread(target=serve, args=(net, options, stop, lambda e, port, _: ready.put((e, port))),
                              daemon=True)
    thread.start()
    endpoint, port = ready.get(timeout=120)
    yield endpoint, port
    stop.set()
    thread.join(10)
    assert not thread.is_alive(), "serve did not stop"


class Client:
    def __init__(self, endpoint):
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.seq = 0

    def next(self):
        self.seq += 1
        return self.seq

    def send(self, message):
        self.sock.send(message if isinstance(message, bytes) else p.encode(message))

    def wait_for(self, wanted, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if not self.sock.poll(remaining * 1000):
                break
            message = p.decode(self.sock.recv())
            if wanted(message):
                return message
        raise AssertionError("engine did not answer")

    def close(self):
        self.sock.close(0)
        self.context.term()


class GoodGateway(Client):
    def __init__(self, endpoint, net):
        super().__init__(endpoint)
        self.net = net
        self.send(p.Hello(self.next(), time.time(), "good", net.signal_ids, net.lane_ids))
        self.wait_for(lambda m: isinstance(m, p.Welcome))
        n = net.n_signals    # what the signals show: each in its first green for 30 s
        self.send(p.StateReport(self.next(), time.time(), -1, "local", np.zeros(n, np.int16),
                                np.zeros(n, np.int16), np.zeros(n, np.uint8), np.full(n, 30.0), ()))

    def round_trip(self):
        """A valid frame for every lane; the command answering it must cover every signal."""
        ones = np.ones(self.net.n_lanes, np.float32)
        seq = self.next()
        self.send(p.DetectorMessage(seq, time.time(), None, ones, ones, ones / 100))
        command = self.wait_for(lambda m: isinstance(m, p.SignalCommand) and m.frame_seq == seq)
        assert command.phase.size == self.net.n_signals and (command.phase >= 0).all()
        return command


def test_running_engine_rejects_each_bad_input_and_keeps_serving(running_engine, net):
    endpoint, port = running_engine
    good = GoodGateway(endpoint, net)
    first = good.round_trip()
    assert sorted(first.changed.tolist()) == list(range(net.n_signals))   # first command sets every signal

    bad = Client(endpoint)
    lanes3 = net.lane_ids[:3]
    f32 = np.ones(3, np.float32)
    bad.send(p.Hello(bad.next(), time.time(), "bad", (*net.signal_ids[:2], "ghost-signal"),
                     (*lanes3, "ghost-lane")))
    welcome = bad.wait_for(lambda m: isinstance(m, p.Welcome))
    assert welcome.unknown_signals == ("ghost-signal",) and welcome.unknown_lanes == ("ghost-lane",)
    # The good gateway holds those two signals: the claim is refused, the rest of the hello stands.
    assert welcome.owned_signals == net.signal_ids[:2]
    assert bad.wait_for(lambda m: isinstance(m, p.ErrorNotice)).reason == "signal_owned"
    # A valid detector frame in the hello's lane order (3 lanes + the ghost).
    detector = msgpack.unpackb(p.encode(p.DetectorMessage(0, 0.0, None, np.ones(4, np.float32), None, None)))

    def raw(**fields):
        return msgpack.packb({**detector, "seq": bad.next(), "time_s": time.time(), **fields}, use_bin_type=True)

    def expect(reason, message, count=1):
        before = rejections(port)[reason]
        bad.send(message)
        notice = bad.wait_for(lambda m: isinstance(m, p.ErrorNotice))
        assert notice.reason == reason
        assert rejections(port)[reason] - before == count, reason
        try:   # the notice names the message by its seq wherever that can be read
            seq = msgpack.unpackb(message)["seq"]
        except Exception:
            seq = -1
        assert notice.ref_seq == (seq if isinstance(seq, int) else -1), (reason, notice.ref_seq)

    expect("malformed", b"\xc1 not msgpack")
    expect("malformed", msgpack.packb(["a", "list"]))
    expect("malformed", raw(vehicles=[1.0, 2.0]))
    expect("malformed", raw(vehicles=f32.tobytes()))    # 3 values for the hello's 4 lanes
    expect("bad_version", raw(v=2))
    expect("unknown_type", raw(type="teleport"))
    expect("unknown_type", p.encode(p.Welcome(bad.next(), time.time(), "x", "y", 1.0, (), ())))
    expect("unknown_type", msgpack.packb({"v": 1, "type": "command", "seq": bad.next(), "time_s": time.time()}))
    expect("malformed", p.encode(p.Hello(bad.next(), time.time(), "bad", ("A0", "A0"), ())))
    expect("invalid_value", p.encode(p.DetectorMessage(bad.next(), time.time(), lanes3, f32, f32 * 2, None)), 3)
    expect("unknown_id", p.encode(p.DetectorMessage(bad.next(), time.time(), ("nope", lanes3[0]),
                                                    np.ones(2, np.float32), None, None)))
    values = np.array([np.nan, -2.0, 1e6, 1.0], np.float32)
    expect("invalid_value", raw(vehicles=values.tobytes()), count=3)   # hello order: 3 lanes + ghost
    expect("invalid_value", p.encode(p.DetectorMessage(bad.next(), time.time(), lanes3, f32, None, f32 * 2)), 3)
    seq = bad.next()
    bad.send(raw(seq=seq))
    expect("duplicate", raw(seq=seq))
    expect("out_of_order", raw(seq=seq - 1))
    expect("stale", raw(time_s=time.time() - 60))
    expect("future", raw(time_s=time.time() + 60))
    expect("oversized", b"\x00" * (65 * 1024))
    sighting = p.EmergencySighting("amb", "ghost-lane", 1.0, 10.0, (), None, 1)
    expect("unknown_id", p.encode(p.CameraMessage(bad.next(), time.time(), lanes3, f32, f32, (sighting,))))
    bad.sock.send_multipart([b"part one", b"part two"])
    assert bad.wait_for(lambda m: isinstance(m, p.ErrorNotice)).reason == "malformed"

    stranger = Client(endpoint)
    stranger.send(p.DetectorMessage(1, time.time(), None, f32, None, None))
    assert stranger.wait_for(lambda m: isinstance(m, p.ErrorNotice)).reason == "unknown_gateway"

    # A flood from one sender: it is rate-limited; the good gateway is still served.
    before = rejections(port)["rate_limited"]
    heartbeat = p.encode(p.Heartbeat(0, 0.0))
    for _ in range(20_000):
        bad.sock.send(heartbeat)
    for _ in range(5):
        good.round_trip()
    time.sleep(0.5)
    assert rejections(port)["rate_limited"] - before > 10_000

    # Thousands of random inputs at the live engine: every one is rejected, counted, and harmless.
    fuzzer = Client(endpoint)
    rng = np.random.default_rng(7)
    total_before = sum(rejections(port).values())
    n_fuzz = 3000
    for _ in range(n_fuzz):
        fuzzer.sock.send(rng.bytes(int(rng.integers(1, 200))))
    deadline = time.monotonic() + 20
    while sum(rejections(port).values()) - total_before < n_fuzz and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(rejections(port).values()) - total_before == n_fuzz
    for _ in range(3):
        good.round_trip()

    metrics = scrape(port)
    assert metrics[("citybrain_stale_intersections", ())] == 0
    assert metrics[("citybrain_loop_seconds_count", ())] > 10      # it kept stepping at 10 Hz
    for client in (good, bad, stranger, fuzzer):
        client.close()


def test_engine_steps_at_10_hz_on_its_wall_clock(running_engine, net):
    endpoint, port = running_engine
    good = GoodGateway(endpoint, net)
    good.round_trip()
    start = scrape(port)[("citybrain_loop_seconds_count", ())]
    time.sleep(2.0)
    steps = scrape(port)[("citybrain_loop_seconds_count", ())] - start
    assert 10 <= steps <= 30     # 20 expected; generous bounds, this is not a timing test
    good.close()


# -- whole runs: serve and gateway as a user starts them -------------------

EV_SCENARIO = ROOT / "scenarios" / "grid3x3-ev"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(*args):
    proc = subprocess.Popen([sys.executable, "-m", "citybrain.cli", "serve", str(SHORT), "--clock", "frames",
                             "--metrics-port", "0", *args], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        match = re.search(r"listening on (\S+); metrics http://127.0.0.1:(\d+)/metrics", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()   # keep the pipe drained
            return proc, match.group(1), int(match.group(2))
    raise AssertionError(f"serve did not start (exit {proc.wait()})")


def stop_serve(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def gateway(endpoint, out, *args, background=False, scenario=SHORT):
    cmd = [sys.executable, "-m", "citybrain.cli", "gateway", str(scenario), "--engine", endpoint,
           "--json", str(out), *args]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.parametrize("detectors", ["lanes", "loops"])
def test_over_the_wire_equals_in_process(tmp_path, detectors):
    """On the 3x3 grid with emergency vehicles: their sightings go to the engine
    as camera frames, and its preemption reaches SUMO through the gateway. With
    loops, the gateway sends the lane counts it estimated from them."""
    proc, endpoint, _ = start_serve("--bind", "tcp://127.0.0.1:*")
    try:
        gateway(endpoint, tmp_path / "wire.json", "--detectors", detectors, scenario=EV_SCENARIO)
    finally:
        stop_serve(proc)
    sim = citybrain("simulate", str(EV_SCENARIO), "--controller", "citybrain", "--detectors", detectors,
                    "--json", str(tmp_path / "sim.json"))
    assert sim.returncode == 0, sim.stderr
    wire = json.loads((tmp_path / "wire.json").read_text())["controllers"]["citybrain"]
    local = json.loads((tmp_path / "sim.json").read_text())["controllers"]["citybrain"]
    # The first period starts the signals on their program (the gateway's own step); the engine then takes over.
    assert wire["gateway"]["engine_steps"] == 299 and wire["gateway"]["local_steps"] == 1
    assert wire["gateway"]["notices"] == {}      # the engine accepted every frame
    assert wire["detectors"] == local["detectors"] == detectors
    assert local["ev_count"] == 2 and local["emergency"]["preemption"]["entries"] > 0
    for key in (*KEYS, "ev_count", "ev_mean_delay_s", "ev_mean_stops", "emergency_braking"):
        assert wire[key] == local[key], key
    assert wire["emergency"]["signals_passed"] == local["emergency"]["signals_passed"]
    assert wire["emergency"]["not_green"] == local["emergency"]["not_green"] == 0


def test_engine_killed_mid_run_and_restarted(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    first, _, port = start_serve("--bind", address)
    run = gateway(address, tmp_path / "run.json", "--pace", "40", "--engine-timeout", "0.5", background=True)
    deadline = time.monotonic() + 60
    while scrape(port)[("citybrain_messages_received_total", (("type", "detector"),))] < 60:
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    first.kill()                     # SIGKILL: no goodbye
    first.wait()
    second, _, port = start_serve("--bind", address)
    try:
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        resumed = scrape(port)[("citybrain_messages_received_total", (("type", "detector"),))]
    finally:
        stop_serve(second)
    result = json.loads((tmp_path / "run.json").read_text())["controllers"]["citybrain"]
    g = result["gateway"]
    assert g["engine_lost"] >= 1 and g["local_steps"] > 0 and resumed > 10
    assert g["engine_steps"] + g["local_steps"] == 300
    assert result["safety_violations"] == 0 and result["throughput_veh"] > 0


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A gateway run of 120 s against the citybrain engine, every message recorded."""
    folder = tmp_path_factory.mktemp("recording")
    proc, endpoint, _ = start_serve("--bind", "tcp://127.0.0.1:*")
    try:
        gateway(endpoint, folder / "run.json", "--end", "120", "--record", str(folder / "run.cbrec"))
    finally:
        stop_serve(proc)
    return folder / "run.cbrec"


def replay_against(recording, *serve_args, json_out=None):
    proc, endpoint, _ = start_serve("--bind", "tcp://127.0.0.1:*", *serve_args)
    try:
        return citybrain("gateway", "--replay", str(recording), "--engine", endpoint,
                         *(["--json", str(json_out)] if json_out else []))
    finally:
        stop_serve(proc)


def test_recorded_stream_replays_identically(recording, tmp_path):
    replayed = replay_against(recording, json_out=tmp_path / "replay.json")
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads((tmp_path / "replay.json").read_text())
    assert result["frames"] == 119 and result["commands"] == 119 and result["mismatches"] == 0


def test_replay_detects_a_different_engine(recording):
    """The replay check can fail: the same stream against another controller diverges."""
    replayed = replay_against(recording, "--controller", "maxpressure")
    assert replayed.returncode == 2 and "diverged" in replayed.stderr


def test_serve_refuses_a_broken_network(tmp_path):
    broken = tmp_path / "broken.net.xml"
    broken.write_text("<net><edge id='a'")
    run = subprocess.run([sys.executable, "-m", "citybrain.cli", "serve", str(broken)], capture_output=True,
                         text=True, timeout=60, env={**os.environ})
    assert run.returncode == 2 and "broken.net.xml" in run.stderr and "Traceback" not in run.stderr
