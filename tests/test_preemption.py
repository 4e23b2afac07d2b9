"""Emergency preemption: arrival estimates, clearance before arrival, several
vehicles, timeouts; driven through the real engine and safety layer on the
3x3 grid, then in SUMO."""
import json

import numpy as np
import pytest

from citybrain.cli import main
from citybrain.config import PreemptionConfig, SignalTiming
from citybrain.controllers import make_controller
from citybrain.engine import Engine
from citybrain.frame import DetectorFrame, EmergencyVehicle
from citybrain.kernels import STAGE_GREEN
from citybrain.network import load_network
from citybrain.preemption import DWELL, ENTRY, IDLE, WAITING, signal_turns
from citybrain.safety import SafetyMonitor

from .conftest import ROOT

GRID3_NET = ROOT / "networks" / "grid3x3" / "grid3x3.net.xml"
EV_SCENARIO = ROOT / "scenarios" / "grid3x3-ev"
WEST_EAST = ("left1A1", "left1A1.140.00", "A1B1", "A1B1.140.00", "B1C1", "B1C1.140.00", "C1right1")
EAST_WEST = ("right1C1", "right1C1.140.00", "C1B1", "C1B1.140.00", "B1A1", "B1A1.140.00", "A1left1")
NORTH_SOUTH = ("top1B2", "top1B2.140.00", "B2B1", "B2B1.140.00", "B1B0", "B1B0.140.00", "B0bottom1")


@pytest.fixture(scope="module")
def net():
    return load_network(GRID3_NET)


def edges(net, names):
    return tuple(net.edge_index[name] for name in names)


class Drive:
    """The engine on an empty street, with emergency vehicles moving at constant
    speed along their routes; every displayed state is audited."""

    def __init__(self, net, config=None, start_phase=None):
        self.net = net
        self.timing = SignalTiming()
        self.engine = Engine(net, make_controller("maxpressure", net), self.timing,
                             preemption=config or PreemptionConfig())
        self.monitor = SafetyMonitor(net, self.timing.min_green_s, 1.0, self.timing.preemption_min_green_s)
        self.zeros = np.zeros(net.n_lanes)
        self.halting = np.zeros(net.n_lanes)
        self.time_s = 0.0
        self.shown = {}
        self.step([])
        if start_phase is not None:
            safety = self.engine.safety
            signals = np.arange(net.n_signals, dtype=np.int32)
            safety.adopt(signals, np.array([start_phase(s) for s in signals], dtype=np.int32),
                         np.zeros(net.n_signals, np.int32), np.zeros(net.n_signals, np.int8), np.zeros(net.n_signals))

    def step(self, vehicles):
        frame = DetectorFrame(self.time_s, self.zeros, self.halting, self.zeros, tuple(vehicles))
        commands = self.engine.step(frame)
        for signal, state in zip(commands.signals.tolist(), commands.states):
            self.shown[signal] = state
        self.monitor.observe([self.shown[s] for s in range(self.net.n_signals)], self.engine.preempting)
        self.time_s += 1.0
        return commands


def vehicle_at(net, vehicle_id, route, distance_m, speed, priority=1, time_s=0.0, destination=-1):
    """The vehicle `distance_m` along `route` (edge indices)."""
    for k, edge in enumerate(route):
        length = net.edge_length_m[edge]
        if distance_m < length or k == len(route) - 1:
            return EmergencyVehicle(vehicle_id, edge, min(distance_m, length), speed, tuple(route[k:]) if route else (),
                                    destination, priority, time_s)
        distance_m -= length
    raise AssertionError("unreachable")


def stop_lines(net, route):
    """Distance along the route to each signal's stop line, with the phase it needs."""
    turns = signal_turns(net)
    out, travelled = [], 0.0
    for a, b in zip(route, route[1:]):
        travelled += net.edge_length_m[a]
        if (a, b) in turns:
            out.append((turns[(a, b)].signal, turns[(a, b)].phase, travelled))
    return out


def test_arrival_estimates_follow_the_route_at_free_flow(net):
    route = edges(net, WEST_EAST)
    drive = Drive(net)
    drive.step([vehicle_at(net, "ev", route, 10.0, 13.89, time_s=drive.time_s)])
    arrivals = {r.signal: r.arrival_s for r in drive.engine.preemption.requests}
    expected = {signal: (distance - 10.0) / 13.89 for signal, _, distance in stop_lines(net, route)}
    assert set(arrivals) == set(expected) and len(expected) == 3
    for signal, eta in expected.items():
        assert arrivals[signal] == pytest.approx(eta, abs=0.01)


def test_a_faster_vehicle_and_an_old_report_bring_arrival_forward(net):
    route = edges(net, WEST_EAST)
    drive = Drive(net)
    drive.step([vehicle_at(net, "ev", route, 10.0, 13.89 * 1.5, time_s=drive.time_s - 2.0)])
    first_signal, _, distance = stop_lines(net, route)[0]
    eta = next(r.arrival_s for r in drive.engine.preemption.requests if r.signal == first_signal)
    assert eta == pytest.approx((distance - 10.0) / (13.89 * 1.5) - 2.0, abs=0.01)


def conflicting_start(net, route):
    """A start phase per signal that conflicts with what the vehicle needs on `route`."""
    needs = {signal: phase for signal, phase, _ in stop_lines(net, route)}
    return lambda s: (needs[s] + 2) % 4 if s in needs else 0


@pytest.mark.parametrize("speed", [10.0, 13.89, 20.0])
def test_green_is_up_before_arrival_and_clearance_is_whole(net, speed):
    route = edges(net, WEST_EAST)
    drive = Drive(net, start_phase=conflicting_start(net, route))
    stops = stop_lines(net, route)
    safety = drive.engine.safety
    green_since = {}
    for t in range(60):
        travelled = 5.0 + speed * t
        if travelled > stops[-1][2] + 10:
            break
        drive.step([vehicle_at(net, "ev", route, travelled, speed, time_s=drive.time_s)])
        for signal, phase, distance in stops:
            showing = safety.stage[signal] == STAGE_GREEN and safety.green_phase[signal] == phase
            if distance >= travelled:
                if showing:
                    green_since.setdefault(signal, travelled)
                else:
                    green_since.pop(signal, None)
    margin_m = PreemptionConfig().margin_s * speed
    for signal, _, distance in stops:
        assert signal in green_since, f"{net.signal_ids[signal]} not green when the vehicle arrived"
        assert distance - green_since[signal] >= margin_m - speed, net.signal_ids[signal]
    report = drive.monitor.report
    assert report.violations == 0, report.as_dict()


def test_signal_returns_to_adaptive_control_after_the_vehicle_passed(net):
    route = edges(net, WEST_EAST)
    drive = Drive(net, start_phase=conflicting_start(net, route))
    first, _, distance = stop_lines(net, route)[0]
    preemption = drive.engine.preemption
    states = []
    for t in range(40):
        drive.step([vehicle_at(net, "ev", route, 5.0 + 13.89 * t, 13.89, time_s=drive.time_s)])
        states.append(int(preemption.state[first]))
    assert ENTRY in states and DWELL in states
    assert states[-1] == IDLE and first not in preemption.serving


def test_conflicting_requests_go_by_priority_then_arrival(net):
    across, down = edges(net, WEST_EAST), edges(net, NORTH_SOUTH)
    middle = net.signal_ids.index("B1")
    _, _, to_middle = stop_lines(net, across)[1]
    _, _, to_middle_down = stop_lines(net, down)[1]

    def plan(across_priority, down_priority, across_gap_m, down_gap_m):
        drive = Drive(net)
        vehicles = [vehicle_at(net, "across", across, to_middle - across_gap_m, 13.89, across_priority, 0.0),
                    vehicle_at(net, "down", down, to_middle_down - down_gap_m, 13.89, down_priority, 0.0)]
        drive.step(vehicles)
        preemption = drive.engine.preemption
        status = {r.vehicle_id: r.status for r in preemption.requests if r.signal == middle}
        return preemption.serving.get(middle), status

    served, status = plan(2, 1, 20.0, 60.0)      # the farther one is more urgent
    assert served == "down" and status["across"] == WAITING
    served, status = plan(1, 1, 20.0, 60.0)      # equal priority: the nearer one
    assert served == "across" and status["down"] == WAITING


def test_compatible_requests_are_served_together(net):
    east, west = edges(net, WEST_EAST), edges(net, EAST_WEST)
    middle = net.signal_ids.index("B1")
    drive = Drive(net)
    to_b1_east = stop_lines(net, east)[1][2]
    to_b1_west = stop_lines(net, west)[1][2]
    drive.step([vehicle_at(net, "east", east, to_b1_east - 30, 13.89, 2, 0.0),
                vehicle_at(net, "west", west, to_b1_west - 20, 13.89, 1, 0.0)])
    preemption = drive.engine.preemption
    status = {r.vehicle_id: r.status for r in preemption.requests if r.signal == middle}
    assert status == {"east": ENTRY, "west": ENTRY}
    assert preemption.counts.conflicts == 0


def test_a_stuck_vehicle_times_out_and_is_not_served_again(net):
    route = edges(net, WEST_EAST)
    config = PreemptionConfig(max_presence_s=10.0)
    drive = Drive(net, config, start_phase=conflicting_start(net, route))
    first, _, distance = stop_lines(net, route)[0]
    preemption = drive.engine.preemption
    for _ in range(25):
        drive.step([vehicle_at(net, "ev", route, distance - 20.0, 0.0, time_s=drive.time_s)])
    assert preemption.counts.timeouts == 1
    assert preemption.state[first] == IDLE
    assert drive.monitor.report.violations == 0


def test_a_vehicle_no_longer_reported_is_dropped(net):
    route = edges(net, WEST_EAST)
    drive = Drive(net)
    drive.step([vehicle_at(net, "ev", route, 100.0, 13.89, time_s=drive.time_s)])
    assert drive.engine.preemption.tracks
    for _ in range(int(PreemptionConfig().drop_after_s) + 2):
        drive.step([])
    assert not drive.engine.preemption.tracks and not drive.engine.preemption.serving


def test_a_destination_is_routed_on_the_network_graph(net):
    route = edges(net, WEST_EAST)
    drive = Drive(net)
    vehicle = EmergencyVehicle("ev", route[0], 10.0, 13.89, (), route[-1], 1, drive.time_s)
    drive.step([vehicle])
    signals = {r.signal for r in drive.engine.preemption.requests}
    assert signals == {s for s, _, _ in stop_lines(net, route)}


def test_preemption_off_leaves_control_to_the_controller(net):
    drive = Drive(net, PreemptionConfig(enabled=False))
    drive.step([vehicle_at(net, "ev", edges(net, WEST_EAST), 100.0, 13.89, time_s=drive.time_s)])
    assert drive.engine.preemption is None and not drive.engine.preempting.any()


@pytest.fixture(scope="module")
def ev_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ev")
    reports = {}
    for label, flags in (("on", []), ("off", ["--no-preemption"])):
        path = out / f"{label}.json"
        assert main(["simulate", str(EV_SCENARIO), "--json", str(path), *flags]) == 0
        reports[label] = json.loads(path.read_text())["controllers"]["citybrain"]
    return reports


def test_in_sumo_the_emergency_vehicles_meet_only_green(ev_runs):
    on = ev_runs["on"]
    assert on["ev_count"] == 2
    audit = on["emergency"]
    assert audit["signals_passed"] >= 6
    assert audit["not_green"] == 0, audit["not_green_at"]
    assert on["ev_mean_stops"] == 0
    assert on["safety_violations"] == 0 and on["emergency_braking"] == 0
    assert audit["preemption"]["entries"] >= audit["signals_passed"]


def test_in_sumo_preemption_cuts_emergency_delay(ev_runs):
    on, off = ev_runs["on"], ev_runs["off"]
    assert off["emergency"]["not_green"] > 0 and off["emergency"]["preemption"] is None
    assert on["ev_mean_delay_s"] < 0.5 * off["ev_mean_delay_s"]
    assert off["safety_violations"] == 0


def test_a_nearer_vehicle_is_not_overtaken_by_one_whose_signal_entered_first(net):
    """At B1 the first vehicle's phase is green (so its request starts early, to
    hold it), the second's is not; the second arrives first and goes first."""
    across, down = edges(net, WEST_EAST), edges(net, NORTH_SOUTH)
    middle = net.signal_ids.index("B1")
    _, across_phase, to_middle = stop_lines(net, across)[1]
    _, _, to_middle_down = stop_lines(net, down)[1]
    drive = Drive(net, start_phase=lambda s: across_phase if s == middle else 0)
    speed = 13.89
    drive.step([vehicle_at(net, "across", across, to_middle - 11.5 * speed, speed, 1, drive.time_s),
                vehicle_at(net, "down", down, to_middle_down - 10.0 * speed, speed, 1, drive.time_s)])
    preemption = drive.engine.preemption
    status = {r.vehicle_id: r.status for r in preemption.requests if r.signal == middle}
    assert preemption.serving.get(middle) == "down" and status["across"] == WAITING


def test_a_vehicle_whose_green_shows_keeps_it_against_its_own_class(net):
    across, down = edges(net, WEST_EAST), edges(net, NORTH_SOUTH)
    middle = net.signal_ids.index("B1")
    _, across_phase, to_middle = stop_lines(net, across)[1]
    _, _, to_middle_down = stop_lines(net, down)[1]

    def newcomer_gets_it(priority):
        drive = Drive(net, start_phase=lambda s: across_phase if s == middle else 0)
        preemption = drive.engine.preemption
        drive.step([vehicle_at(net, "across", across, to_middle - 60.0, 13.89, 2, drive.time_s)])
        drive.step([vehicle_at(net, "across", across, to_middle - 46.0, 13.89, 2, drive.time_s)])
        assert preemption.serving[middle] == "across" and preemption.state[middle] == DWELL
        drive.step([vehicle_at(net, "across", across, to_middle - 32.0, 13.89, 2, drive.time_s),
                    vehicle_at(net, "down", down, to_middle_down - 20.0, 13.89, priority, drive.time_s)])
        return preemption.serving[middle] == "down"

    assert not newcomer_gets_it(priority=2)   # same class, arriving first: waits
    assert newcomer_gets_it(priority=1)       # more urgent: takes the signal


def test_a_queue_on_a_shared_lane_gets_the_phase_that_clears_the_whole_lane(resco):
    # cologne8 26110729: -297047310#2 has one lane for every turn; its left turn is
    # protected only in a phase that holds the lane's other turns at red, so a
    # vehicle ahead bound straight on would block the emergency vehicle there.
    net = load_network(resco / "cologne8" / "cologne8.net.xml")
    route = edges(net, ("-297047310#2", "186623965#15"))
    turn = signal_turns(net)[route]
    signal, lane = turn.signal, net.lane_index["-297047310#2_0"]
    links = net.move_link[net.move_in_lane == lane]
    levels = [net.phase_green_level[net.phase_link_ptr[p]:net.phase_link_ptr[p + 1]] for p in net.phases_of(signal)]
    assert not (levels[turn.phase][links] > 0).all()
    assert (levels[turn.lane_phase][links] > 0).all() and turn.lane_phase != turn.phase

    def requested_phase(queued):
        drive = Drive(net)
        drive.halting[lane] = queued
        drive.step([vehicle_at(net, "ev", route, net.edge_length_m[route[0]] - 100.0, 13.89, time_s=drive.time_s)])
        return next(r.phase for r in drive.engine.preemption.requests if r.signal == signal)

    assert requested_phase(queued=0) == turn.phase
    assert requested_phase(queued=3) == turn.lane_phase
