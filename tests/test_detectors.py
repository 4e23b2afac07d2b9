"""Detector mode: the standard loop layout, and what the controllers see from it in SUMO."""
import numpy as np
import pytest

from citybrain.config import DetectorConfig
from citybrain.detectors import scenario_layout, standard_layout
from citybrain.engine import SignalCommands
from citybrain.network import load_network
from citybrain.run import RunOptions, simulate
from citybrain.scenario import ScenarioError, load_scenario
from citybrain.sumo_adapter import SumoOptions, SumoSimulation

from .conftest import SHORT


def test_layout_places_a_stop_line_loop_and_advance_loops_on_every_approach(resco):
    net = load_network(resco / "ingolstadt7" / "ingolstadt7.net.xml")
    layout = standard_layout(net)
    approaches = np.unique(net.move_in_lane)
    assert np.array_equal(layout.lane, approaches)
    # The stop-line loop is on the approach lane itself, 3 m before the line, where the
    # lane is long enough; on a shorter one, vehicles wait on the lanes feeding it.
    setback = DetectorConfig().stop_line_setback_m
    long_enough = net.lane_length_m[approaches] > setback
    first_stop = layout.stop_loop[layout.stop_ptr[:-1]]
    assert np.array_equal(layout.loop_lane[first_stop][long_enough], approaches[long_enough])
    np.testing.assert_allclose(layout.loop_position_m[first_stop][long_enough],
                               net.lane_length_m[approaches][long_enough] - setback, atol=0.05)
    assert (~long_enough).any()
    short_stop = np.repeat(~long_enough, np.diff(layout.stop_ptr))
    assert (layout.loop_lane[layout.stop_loop[short_stop]] != np.repeat(approaches, np.diff(layout.stop_ptr))[short_stop]).all()
    # Every approach has advance loops, each carrying its share of the approach's arrivals
    # (a feeder lane split over k lanes gives each 1/k), and short turn-bay lanes get
    # theirs upstream, on the lanes feeding them.
    counts = np.diff(layout.advance_ptr)
    assert (counts >= 1).all()
    assert ((layout.advance_share > 0) & (layout.advance_share <= 1)).all()
    upstream = layout.loop_lane[layout.advance_loop] != np.repeat(layout.lane, counts)
    assert upstream.any()
    assert (layout.loop_position_m <= net.lane_length_m[layout.loop_lane] + 1e-9).all()
    assert (layout.capacity_veh >= 1).all() and (layout.crossing_s >= 0).all()
    assert len(set(layout.loop_ids)) == layout.n_loops


def test_loop_frames_follow_the_true_queues_in_sumo():
    """The estimate from loops alone follows SUMO's own halting counts on the approach lanes.
    It counts every vehicle that came in more than a crossing ago and has not left,
    creeping ones too, so it runs above SUMO's count of vehicles below 0.1 m/s
    (by about 60% on this scenario) but must rise and fall with it."""
    scenario = load_scenario(SHORT)
    net = load_network(scenario.net_file)
    estimated, truth = [], []
    with SumoSimulation(scenario, net, SumoOptions(detectors="loops", end_s=200)) as sim:
        lanes = sim.loops.lane
        while sim.running():
            frame = sim.read_frame()
            estimated.append(frame.halting[lanes])
            truth.append([sim._api.lane.getLastStepHaltingNumber(net.lane_ids[lane]) for lane in lanes])
            other = np.setdiff1d(np.arange(net.n_lanes), lanes)
            assert not frame.vehicles[other].any()     # lanes without loops read nothing
            sim.advance(1.0)
    estimated, truth = np.array(estimated), np.array(truth)
    assert truth.sum() > 100
    assert np.corrcoef(estimated.ravel(), truth.ravel())[0, 1] > 0.7
    assert truth.sum() <= estimated.sum() < 2 * truth.sum()


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_citybrain_runs_on_loops_alone_and_safely(backend):
    result = simulate(SHORT, "citybrain", RunOptions(backend=backend, end_s=200, detectors="loops"))
    assert result["detectors"] == "loops"
    assert result["safety_violations"] == 0
    assert result["throughput_veh"] > 30
    exact = simulate(SHORT, "citybrain", RunOptions(backend=backend, end_s=200))
    assert result["mean_delay_s"] != exact["mean_delay_s"]   # it really saw something else


def scenario_with_loops(tmp_path, layout, net, name="looped"):
    """grid3x3-short plus an additional file defining `layout`'s loops as the
    scenario's own, aggregating over 900 s (not our control period)."""
    scenario = load_scenario(SHORT)
    loops = "".join(f'<inductionLoop id="det{j}" lane="{net.lane_ids[lane]}" pos="{position:.2f}" period="900" '
                    f'file="NUL"/>' for j, (lane, position) in enumerate(zip(layout.loop_lane, layout.loop_position_m)))
    (tmp_path / "loops.add.xml").write_text(f"<additional>{loops}</additional>")
    routes = ",".join(str(r) for r in scenario.route_files)
    config = tmp_path / f"{name}.sumocfg"
    config.write_text(f'<configuration><input><net-file value="{scenario.net_file}"/>'
                      f'<route-files value="{routes}"/><additional-files value="loops.add.xml"/></input>'
                      f'<time><begin value="0"/><end value="300"/></time></configuration>')
    return config


def test_a_scenarios_own_loops_are_found_and_read_like_ours(tmp_path):
    """auto picks the scenario's own loops; placed where ours would be, they give the same frames."""
    net = load_network(load_scenario(SHORT).net_file)
    config = scenario_with_loops(tmp_path, standard_layout(net), net)
    frames = {}
    for mode, path in (("loops", SHORT), ("auto", config)):
        with SumoSimulation(load_scenario(path), net, SumoOptions(detectors=mode, end_s=150)) as sim:
            assert sim.detectors == ("scenario" if mode == "auto" else "loops")
            frames[mode] = []
            while sim.running():
                frame = sim.read_frame()
                frames[mode].append(np.concatenate([frame.vehicles, frame.halting, frame.occupancy]))
                sim.advance(1.0)
    assert np.array(frames["loops"]).any()
    # Equal up to the space between the loops (vehicles fitting in it, within 0.01): ours
    # measure it from where they are computed, the scenario's from its file (to 0.1 m).
    np.testing.assert_allclose(np.array(frames["auto"]), np.array(frames["loops"]), atol=0.01)


def test_scenario_loops_upstream_only_still_observe_their_lane(tmp_path):
    """Approaches that lose their stop-line loop keep their advance loops: they are
    still observed, with no stop-line loop (departures come from the signal states)."""
    net = load_network(load_scenario(SHORT).net_file)
    layout = standard_layout(net)
    keep = np.ones(layout.n_loops, dtype=bool)
    keep[layout.stop_loop[:5]] = False                     # five approaches lose their stop-line loop
    partial = type(layout)(**{**layout.__dict__, "loop_lane": layout.loop_lane[keep],
                              "loop_position_m": layout.loop_position_m[keep]})
    found = scenario_layout(net, load_scenario(scenario_with_loops(tmp_path, partial, net)).induction_loops())
    assert np.array_equal(found.lane, layout.lane)
    upstream_only = found.upstream_only
    assert set(upstream_only) == set(layout.lane[:5])


def test_queues_seen_only_by_upstream_loops_follow_the_true_queues_in_sumo(tmp_path):
    """Every approach with its advance loop alone: arrivals are counted there, departures
    come from the signal showing green. The estimate must still rise and fall with SUMO's
    own halting counts, and a lane with no loop at all reads nothing."""
    scenario = load_scenario(SHORT)
    net = load_network(scenario.net_file)
    layout = standard_layout(net)
    keep = ~np.isin(np.arange(layout.n_loops), layout.stop_loop)
    upstream = type(layout)(**{**layout.__dict__, "loop_lane": layout.loop_lane[keep],
                               "loop_position_m": layout.loop_position_m[keep]})
    config = scenario_with_loops(tmp_path, upstream, net)
    estimated, truth = [], []
    with SumoSimulation(load_scenario(config), net, SumoOptions(detectors="scenario", end_s=250)) as sim:
        assert (np.diff(sim.loops.stop_ptr) == 0).all() and sim.observed_lanes[sim.loops.lane].all()
        lanes = sim.loops.lane
        while sim.running():
            frame = sim.read_frame()
            estimated.append(frame.halting[lanes])
            truth.append([sim._api.lane.getLastStepHaltingNumber(net.lane_ids[lane]) for lane in lanes])
            sim.apply(simple_cycle(net, sim.time_s))
            sim.advance(1.0)
    estimated, truth = np.array(estimated), np.array(truth)
    assert truth.sum() > 100
    assert np.corrcoef(estimated.ravel(), truth.ravel())[0, 1] > 0.6
    assert 0.5 * truth.sum() < estimated.sum() < 2 * truth.sum()


def simple_cycle(net, time_s):
    """Each signal's first two phases, 30 s each (no clearance: the estimate is under test)."""
    phase = int(time_s // 30) % 2
    states = tuple(net.phase_states[net.phase_ptr[s] + phase] for s in range(net.n_signals))
    return SignalCommands(np.arange(net.n_signals, dtype=np.int32), states)


def test_scenario_mode_needs_loops_and_auto_falls_back_to_lanes():
    result = simulate(SHORT, "maxpressure", RunOptions(end_s=30))
    assert result["detectors"] == "lanes"
    with pytest.raises(ScenarioError, match="no induction loop"):
        simulate(SHORT, "maxpressure", RunOptions(end_s=30, detectors="scenario"))


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_a_scenarios_lane_area_detectors_report_their_lanes(tmp_path, backend):
    """E2 zones over whole approach lanes count what SUMO counts there (up to their own
    rules: a vehicle counts while any part of it is in the zone, and as halted below
    1.39 m/s for 1 s); lanes without detectors read zero."""
    scenario = load_scenario(SHORT)
    net = load_network(scenario.net_file)
    covered = np.unique(net.move_in_lane)[::2]
    areas = "".join(f'<laneAreaDetector id="cam{j}" lane="{net.lane_ids[lane]}" pos="0" '
                    f'endPos="{net.lane_length_m[lane]:.2f}" file="NUL"/>' for j, lane in enumerate(covered))
    (tmp_path / "cameras.add.xml").write_text(f"<additional>{areas}</additional>")
    routes = ",".join(str(r) for r in scenario.route_files)
    config = tmp_path / "cameras.sumocfg"
    config.write_text(f'<configuration><input><net-file value="{scenario.net_file}"/>'
                      f'<route-files value="{routes}"/><additional-files value="cameras.add.xml"/></input>'
                      f'<time><begin value="0"/><end value="120"/></time></configuration>')
    others = np.setdiff1d(np.arange(net.n_lanes), covered)
    seen, truth = [], []
    with SumoSimulation(load_scenario(config), net, SumoOptions(backend=backend, detectors="scenario")) as sim:
        assert sim.detectors == "scenario" and sim.loops is None
        while sim.running():
            frame = sim.read_frame()
            assert not frame.vehicles[others].any()
            assert (frame.halting <= frame.vehicles).all()
            seen.append(np.concatenate([frame.vehicles[covered], frame.halting[covered]]))
            truth.append([sim._api.lane.getLastStepVehicleNumber(net.lane_ids[lane]) for lane in covered]
                         + [sim._api.lane.getLastStepHaltingNumber(net.lane_ids[lane]) for lane in covered])
            sim.advance(1.0)
    seen, truth = np.array(seen), np.array(truth, dtype=float)
    vehicles, halting = slice(0, len(covered)), slice(len(covered), None)
    assert truth[:, vehicles].sum() > 50 and truth[:, halting].sum() > 20
    assert np.abs(seen[:, vehicles] - truth[:, vehicles]).mean() < 0.02
    assert abs(seen[:, halting].sum() - truth[:, halting].sum()) < 0.2 * truth[:, halting].sum()
