"""Detector mode: the standard loop layout, and what the controllers see from it in SUMO."""
import numpy as np
import pytest

from citybrain.detectors import DetectorConfig, standard_layout
from citybrain.network import load_network
from citybrain.run import RunOptions, simulate
from citybrain.scenario import load_scenario
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
    """The estimate from loops alone tracks SUMO's own halting counts on the approach lanes."""
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
    assert np.corrcoef(estimated.ravel(), truth.ravel())[0, 1] > 0.8
    assert abs(estimated.sum() - truth.sum()) < 0.25 * truth.sum()


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_citybrain_runs_on_loops_alone_and_safely(backend):
    result = simulate(SHORT, "citybrain", RunOptions(backend=backend, end_s=200, detectors="loops"))
    assert result["detectors"] == "loops"
    assert result["safety_violations"] == 0
    assert result["throughput_veh"] > 30
    exact = simulate(SHORT, "citybrain", RunOptions(backend=backend, end_s=200))
    assert result["mean_delay_s"] != exact["mean_delay_s"]   # it really saw something else
