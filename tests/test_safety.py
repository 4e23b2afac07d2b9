"""The safety layer and the monitor, on synthetic sequences and on real SUMO runs."""
import numpy as np
import pytest

from citybrain.config import SignalTiming
from citybrain.controllers import make_controller
from citybrain.engine import Engine
from citybrain.kernels import STAGE_ALL_RED, STAGE_GREEN, STAGE_YELLOW
from citybrain.network import load_network
from citybrain.run import simulate
from citybrain.safety import SafetyLayer, SafetyMonitor
from citybrain.scenario import load_scenario
from citybrain.sumo_home import sumo_tool
from citybrain.sumo_adapter import SumoOptions, SumoSimulation

from .conftest import GRID10_NET, SHORT


@pytest.fixture(scope="module")
def grid():
    return load_network(GRID10_NET)


def test_layer_serves_full_yellow_then_new_green(grid):
    layer = SafetyLayer(grid, SignalTiming(min_green_s=5))
    n = grid.n_signals
    want = np.full(n, 2, np.int32)
    shown = []
    for _ in range(12):
        layer.advance(want)
        shown.append((int(layer.stage[0]), int(layer.green_phase[0])))
    # Min green max(5 s, 2 x 3 s clearance) = 6 s, 3 s yellow (no all-red in this net), then phase 2.
    assert layer.min_green_s[0] == 6.0
    assert shown[:5] == [(STAGE_GREEN, 0)] * 5
    assert shown[5:8] == [(STAGE_YELLOW, 0)] * 3
    assert shown[8] == (STAGE_GREEN, 2)


def test_min_all_red_adds_clearance_where_the_net_has_none(grid):
    timed = grid.with_min_all_red(2.0)
    assert grid.all_red_s[0] == 0.0 and timed.all_red_s[0] == 2.0 and grid.with_min_all_red(0.0) is grid
    layer = SafetyLayer(timed, SignalTiming(min_green_s=5))
    shown = []
    for _ in range(16):
        layer.advance(np.full(grid.n_signals, 2, np.int32))
        shown.append((int(layer.stage[0]), int(layer.green_phase[0])))
    # Min green max(5 s, 2 x (3 s yellow + 2 s all-red)) = 10 s, then 3 s yellow, 2 s all-red, phase 2.
    assert shown[:9] == [(STAGE_GREEN, 0)] * 9
    assert shown[9:12] == [(STAGE_YELLOW, 0)] * 3
    assert [stage for stage, _ in shown[12:14]] == [STAGE_ALL_RED] * 2
    assert shown[14] == (STAGE_GREEN, 2)


def test_min_all_red_shows_in_sumo():
    """What SUMO displays under the engine with a 2 s minimum all-red: no link
    turns green within 2 s of its signal's last yellow."""
    scenario = load_scenario(SHORT)
    net = load_network(scenario.net_file).with_min_all_red(2.0)
    engine = Engine(net, make_controller("citybrain", net), SignalTiming(min_all_red_s=2.0))
    last_yellow_s: dict[int, float] = {}
    previous: list[str] | None = None
    new_greens = 0
    with SumoSimulation(scenario, net, SumoOptions(end_s=200)) as sim:
        while sim.running():
            sim.apply(engine.step(sim.read_frame()))
            sim.advance(1)
            now, states = sim.time_s, sim.read_signal_states()
            for i, state in enumerate(states):
                if "y" in state:
                    last_yellow_s[i] = now
                elif previous and any(a in "Gg" and b == "r" for a, b in zip(state, previous[i])):
                    new_greens += 1
                    assert now - last_yellow_s.get(i, -1e9) > 2.0, (net.signal_ids[i], now)
            previous = states
    sim.cleanup()
    assert new_greens > 0


def test_layer_rounds_fractional_clearance_up(grid):
    layer = SafetyLayer(grid, SignalTiming(min_green_s=1))
    object.__setattr__(grid, "yellow_s", np.full(grid.n_signals, 2.5))
    object.__setattr__(grid, "all_red_s", np.full(grid.n_signals, 1.5))
    try:
        stages = []
        for _ in range(10):
            layer.advance(np.full(grid.n_signals, 2, np.int32))
            stages.append(int(layer.stage[0]))
        assert stages.count(STAGE_YELLOW) == 3 and stages.count(STAGE_ALL_RED) == 2
    finally:
        object.__setattr__(grid, "yellow_s", np.full(grid.n_signals, 3.0))
        object.__setattr__(grid, "all_red_s", np.zeros(grid.n_signals))


def one_signal_states(grid, signal_state):
    """All signals show phase 0 except signal 0, which shows `signal_state`."""
    states = [grid.phase_states[grid.phase_ptr[i]] for i in range(grid.n_signals)]
    states[0] = signal_state
    return states


def test_monitor_counts_each_kind(grid):
    ns, ew = grid.phase_states[0], grid.phase_states[2]
    yellow = grid.signal_state(0, STAGE_YELLOW, 0, 2)
    red = "r" * len(ns)

    monitor = SafetyMonitor(grid, min_green_s=5, dt_s=1)
    for state in [ns] * 6 + [ns.replace("r", "G")]:
        monitor.observe(one_signal_states(grid, state))
    assert monitor.report.conflicting_green_steps == 1

    monitor = SafetyMonitor(grid, min_green_s=5, dt_s=1)
    for state in [ns] * 6 + [red]:
        monitor.observe(one_signal_states(grid, state))
    assert monitor.report.missing_yellow == ns.count("G") + ns.count("g")

    monitor = SafetyMonitor(grid, min_green_s=5, dt_s=1)
    for state in [ns] * 6 + [yellow] * 2 + [ew]:
        monitor.observe(one_signal_states(grid, state))
    assert monitor.report.short_yellow > 0 and monitor.report.missing_yellow == 0

    monitor = SafetyMonitor(grid, min_green_s=5, dt_s=1)
    for state in [ns] * 6 + [yellow] * 3 + [ew] * 2 + [grid.signal_state(0, STAGE_YELLOW, 2, 0)] * 3:
        monitor.observe(one_signal_states(grid, state))
    assert monitor.report.short_green > 0
    assert monitor.report.short_yellow == 0 and monitor.report.conflicting_green_steps == 0
    assert monitor.report.by_signal == {grid.signal_ids[0]: monitor.report.violations}


@pytest.mark.parametrize("controller", ["maxpressure", "citybrain"])
def test_real_sumo_run_has_no_violations(controller):
    result = simulate(SHORT, controller)
    assert result["safety_violations"] == 0, result["safety"]
    assert result["throughput_veh"] > 50


def test_real_sumo_readback_catches_unsafe_switching():
    """Bypass the safety layer: jump between phases with no yellow. The monitor,
    reading what SUMO displayed, must see it; so its zero above means something."""
    scenario = load_scenario(SHORT)
    net = load_network(scenario.net_file)
    monitor = SafetyMonitor(net, min_green_s=5, dt_s=1)
    with SumoSimulation(scenario, net, SumoOptions(end_s=60)) as sim:
        step = 0
        while sim.running():
            phase = (step // 3) % 2 * 2     # 3 s of N-S, then E-W straight away
            for i, sid in enumerate(net.signal_ids):
                sim._api.trafficlight.setRedYellowGreenState(sid, net.phase_states[net.phase_ptr[i] + phase])
            sim.advance(1)
            monitor.observe(sim.read_signal_states())
            step += 1
    sim.cleanup()
    assert monitor.report.missing_yellow > 0 and monitor.report.short_green > 0


def test_engine_commands_change_only_on_transitions():
    scenario = load_scenario(SHORT)
    net = load_network(scenario.net_file)
    engine = Engine(net, make_controller("maxpressure", net))
    changes = 0
    with SumoSimulation(scenario, net, SumoOptions(end_s=120)) as sim:
        first = engine.step(sim.read_frame())
        assert len(first.signals) == net.n_signals
        sim.apply(first)
        while sim.running():
            commands = engine.step(sim.read_frame())
            sim.apply(commands)
            states = sim.read_signal_states()
            for i, state in zip(commands.signals, commands.states):
                assert states[i] == state
            changes += len(commands.signals)
            sim.advance(1)
    sim.cleanup()
    assert changes > 0


def test_a_crossing_gets_the_nets_walk_clearance_before_the_vehicles_yellow():
    # Berlin's 945141768 (SUMO's tools/game/DRT): GGrr 42 s, yyrr 3 s, rrGG 37 s, then
    # rrGr 5 s (the crossing, link 3, red while vehicle link 2 keeps its green), rryr 3 s.
    net = load_network(sumo_tool("game/DRT/osm.net.xml"))
    signal = net.signal_ids.index("945141768")
    first = int(net.phase_ptr[signal])
    assert net.phase_states[first:first + 2] == ("GGrr", "rrGG")
    assert net.crossing_clearance_s[signal] == 5.0 and net.yellow_s[signal] == 3.0
    assert load_network(GRID10_NET).crossing_clearance_s.max() == 0.0   # no crossings there

    layer = SafetyLayer(net, SignalTiming(min_green_s=5))
    ask = np.full(net.n_signals, -1, np.int32)
    shown = []
    for want in [1] * 20 + [0] * 20:
        ask[signal] = want
        layer.advance(ask)
        shown.append(layer.state_strings(np.array([signal]))[0])
    # To rrGG: no crossing ends, so the vehicles' yellow comes at once (no all-red in this net).
    to_second = shown[:20]
    assert to_second.count("yyrr") == 3 and "rrGr" not in to_second and to_second[-1] == "rrGG"
    # Back to GGrr: the crossing goes red 5 s before the vehicles' yellow, as in the net's program.
    back = shown[20:]
    start = back.index("rrGr")
    assert back[start:start + 5] == ["rrGr"] * 5
    assert back[start + 5:start + 8] == ["rryr"] * 3 and back[start + 8] == "GGrr"


def test_monitor_counts_a_walk_clearance_cut_short():
    net = load_network(sumo_tool("game/DRT/osm.net.xml"))
    signal = net.signal_ids.index("945141768")   # program: ... rrGG, rrGr 5 s, rryr 3 s, GGrr

    def shown(sequence):
        monitor = SafetyMonitor(net, min_green_s=5, dt_s=1)
        for state in sequence:
            states = [net.phase_states[net.phase_ptr[i]] for i in range(net.n_signals)]
            states[signal] = state
            monitor.observe(states)
        return monitor.report
    as_programmed = shown(["rrGG"] * 10 + ["rrGr"] * 5 + ["rryr"] * 3 + ["GGrr"] * 3)
    assert as_programmed.violations == 0
    # The walk ends with the vehicles' yellow: links 0 and 1 turn green 3 s after it, not 5.
    cut = shown(["rrGG"] * 10 + ["rryy"] * 3 + ["GGrr"] * 3)
    assert cut.short_walk_clearance == 2 and cut.violations == 2
