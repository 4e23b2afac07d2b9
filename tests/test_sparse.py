"""Sparse detection, as real cities have it: random layouts of counting loops
anywhere upstream, some approaches with none. Every approach keeps being served."""
from dataclasses import replace

import numpy as np
import pytest

from citybrain.controllers import make_controller
from citybrain.detectors import sparse_layout
from citybrain.engine import Engine
from citybrain.network import load_scenario_network
from citybrain.scenario import load_scenario
from citybrain.sumo_adapter import SumoOptions, SumoSimulation

from .city_programs import city_scenario

# Adaptive control may hold a green past the plan's (up to its 30 s max green) to
# serve a queue: the wait it adds to another approach stays under this (12 s at
# worst over layouts 0-3).
SLACK_S = 15.0


def test_sparse_layouts_are_random_partial_and_reproducible(tmp_path):
    net = load_scenario_network(load_scenario(city_scenario(tmp_path)))
    approaches = np.unique(net.move_in_lane)
    shares = []
    for seed in range(10):
        layout = sparse_layout(net, seed)
        again = sparse_layout(net, seed)
        assert np.array_equal(layout.loop_lane, again.loop_lane)
        assert np.array_equal(layout.loop_position_m, again.loop_position_m)
        assert set(layout.lane) <= set(approaches)
        assert (layout.loop_position_m < net.lane_length_m[layout.loop_lane]).all()   # SUMO refuses a loop at the end
        shares.append(len(layout.lane) / approaches.size)
    assert min(shares) < 0.6 and max(shares) > 0.8


def _observe_sparse(engine: Engine, net, layout_seed: int) -> np.ndarray:
    layout = sparse_layout(net, layout_seed)
    observed = np.zeros(net.n_lanes, dtype=bool)
    observed[layout.lane] = True
    modelled = np.zeros(net.n_lanes, dtype=bool)
    modelled[layout.upstream_only] = True
    return engine.observe_lanes(observed, modelled)


def test_signals_that_cannot_count_every_approach_run_the_citys_program(tmp_path):
    """A fixed-time program is the city's own plan, run by us exactly as SUMO runs it:
    a signal that cannot count every approach runs it through our safety layer. An
    actuated one is left to its own controller (never commanded)."""
    for kind in ("static", "actuated"):
        net = load_scenario_network(load_scenario(city_scenario(tmp_path / kind, kind=kind)))
        engine = Engine(net, make_controller("citybrain", net), own_controllers=True)
        share = _observe_sparse(engine, net, 0)
        assert (share < 1.0).any()
        blind = share < 1.0
        assert (engine.on_plan[blind] == (kind == "static")).all()
        assert (engine.local[blind] == (kind == "actuated")).all()
        assert not (engine.on_plan & engine.local).any()
        assert not engine.supervisor.eligible[engine.on_plan | engine.local].any()   # never adaptive there


def test_an_unsafe_actuated_program_is_never_left_to_itself(tmp_path):
    """SUMO's own run of a program with foes in protected green, or a green ended
    without yellow, is unsafe: such a signal stays with us (adaptive, with the
    prior on what it cannot count)."""
    net = load_scenario_network(load_scenario(city_scenario(tmp_path, kind="actuated")))
    net = replace(net, program_unsafe=np.ones(net.n_signals, dtype=bool))
    engine = Engine(net, make_controller("citybrain", net), own_controllers=True)
    share = _observe_sparse(engine, net, 0)
    assert not engine.local.any()
    assert not engine.on_plan[share > 0.0].any() and engine.prior is not None


@pytest.mark.parametrize("kind,layout_seed", [("static", 0), ("static", 1), ("actuated", 2), ("actuated", 3)])
def test_no_approach_waits_much_longer_than_its_plan_would_make_it(tmp_path, kind, layout_seed):
    """citybrain on the city-program grid with a random sparse layout: the longest
    time any approach lane holds a waiting vehicle at red (as SUMO shows it) stays
    within its plan's red (the cycle less its plan green) plus SLACK_S, observed or
    not. The signals left to their own controller are never commanded."""
    scenario = load_scenario(city_scenario(tmp_path, end_s=300, kind=kind))
    net = load_scenario_network(scenario)
    engine = Engine(net, make_controller("citybrain", net), own_controllers=True)
    waited, longest = np.zeros(net.n_lanes), np.zeros(net.n_lanes)
    link = net.link_offset[net.move_signal] + net.move_link
    with SumoSimulation(scenario, net, SumoOptions(detectors="sparse", layout_seed=layout_seed)) as sim:
        share = engine.observe_lanes(sim.observed_lanes, sim.modelled_lanes)
        assert 0.0 < share.mean() < 1.0
        halting = sim._api.lane.getLastStepHaltingNumber
        while sim.running():
            sim.apply(engine.step(sim.read_frame()))
            sim.advance(1.0)
            queued = np.array([halting(lane) for lane in net.lane_ids]) > 0
            states = sim.read_signal_states()
            engine.observe_shown(states, 1.0)
            for signal in np.flatnonzero(engine.local).tolist():    # followed at each green of theirs
                if states[signal] in net.phase_states:
                    assert engine.safety.state_strings(np.array([signal]))[0] == states[signal]
            shown = np.frombuffer("".join(states).encode(), dtype="S1")
            green = np.zeros(net.n_lanes, dtype=bool)
            green[net.move_in_lane[np.isin(shown[link], (b"G", b"g"))]] = True
            waited = np.where(queued & ~green, waited + 1.0, 0.0)
            np.maximum(longest, waited, out=longest)
        programs = [sim._api.trafficlight.getProgram(signal) for signal in net.signal_ids]
    assert [program != "online" for program in programs] == engine.local.tolist()
    approaches = np.unique(net.move_in_lane)
    plan_red_s = net.program_cycle_s[0] * (1.0 - net.lane_plan_share[approaches])
    assert longest[approaches].max() > 20.0                      # vehicles did wait at red
    assert (longest[approaches] <= plan_red_s + SLACK_S).all(), np.max(longest[approaches] - plan_red_s)
