"""What the citybrain scheduler decides in situations whose right answer is plain."""
from types import SimpleNamespace

import numpy as np
import pytest

from citybrain.config import SignalTiming
from citybrain.controllers import make_controller
from citybrain.frame import DetectorFrame
from citybrain.kernels import KEEP, STAGE_GREEN
from citybrain.network import load_network

from .conftest import GRID10_NET


@pytest.fixture(scope="module")
def net():
    return load_network(GRID10_NET)


def only_in(controller, signal, phase, other):
    """Approach lanes `phase` of `signal` serves and `other` does not."""
    first = controller.signal_lane_ptr[signal]

    def served(p):
        g = controller.network.phase_ptr[signal] + p
        positions = controller.phase_lane[controller.phase_lane_ptr[g]:controller.phase_lane_ptr[g + 1]]
        return set(controller.signal_lane[first + positions].tolist())
    return sorted(served(phase) - served(other))


def signals_in_green(net, phase, elapsed_s):
    timing = SignalTiming()
    return SimpleNamespace(green_phase=np.full(net.n_signals, phase, dtype=np.int32),
                           stage=np.full(net.n_signals, STAGE_GREEN, dtype=np.int8),
                           stage_time_s=np.full(net.n_signals, elapsed_s),
                           min_green_s=timing.min_green_of(net.yellow_s + net.all_red_s))


def decide(controller, net, halting, signals, time_s=100.0):
    requested = np.zeros(net.n_signals, dtype=np.int32)
    controller.decide(DetectorFrame(time_s, halting.copy(), halting.copy(), np.zeros(net.n_lanes)), signals,
                      requested)
    return requested


def test_a_discharging_green_is_kept_and_a_served_one_ends(net):
    controller = make_controller("citybrain", net)
    signal = int(np.flatnonzero(np.diff(net.phase_ptr) == 4)[0])   # an inner signal: 2 through, 2 left phases
    # Phase 0 serves one street (its lefts permissively), phase 2 the crossing street.
    mine, theirs = only_in(controller, signal, 0, 2), only_in(controller, signal, 2, 0)
    assert mine and theirs
    signals = signals_in_green(net, 0, elapsed_s=20.0)

    queued_here = np.zeros(net.n_lanes)
    queued_here[mine] = 8.0          # the green's own queue, still there
    queued_here[theirs] = 2.0
    assert decide(controller, net, queued_here, signals)[signal] == KEEP

    served = np.zeros(net.n_lanes)
    served[theirs] = 8.0             # the green's queue is gone; another phase waits
    assert decide(make_controller("citybrain", net), net, served, signals)[signal] == 2


def test_past_max_green_the_current_phase_is_never_kept_while_another_phase_is_called(net):
    controller = make_controller("citybrain", net)
    signals = signals_in_green(net, 0, elapsed_s=controller.config.called_max_green_s)
    halting = np.full(net.n_lanes, 5.0)
    requested = decide(controller, net, halting, signals)
    deciding = np.diff(net.phase_ptr) >= 2
    assert (requested[deciding] != KEEP).all() and (requested[deciding] != 0).all()


def test_past_max_green_a_green_with_no_conflicting_call_rests(net):
    # Vehicles wait only on lanes the current phase serves: no other phase is called,
    # so the max green does not run (as in an actuated controller) and the green stays.
    controller = make_controller("citybrain", net)
    signal = int(np.flatnonzero(np.diff(net.phase_ptr) == 4)[0])
    signals = signals_in_green(net, 0, elapsed_s=controller.config.called_max_green_s + 10.0)
    halting = np.zeros(net.n_lanes)
    halting[only_in(controller, signal, 0, 2)] = 5.0
    assert decide(controller, net, halting, signals)[signal] == KEEP
    halting[only_in(controller, signal, 2, 0)] = 1.0   # one vehicle calls the crossing street's phase
    assert decide(make_controller("citybrain", net), net, halting, signals)[signal] != KEEP


def test_nothing_is_decided_before_the_minimum_green(net):
    controller = make_controller("citybrain", net)
    signals = signals_in_green(net, 0, elapsed_s=1.0)
    assert (decide(controller, net, np.full(net.n_lanes, 5.0), signals) == KEEP).all()


def test_a_shared_lane_does_not_hold_the_phase_that_reds_one_of_its_turns(resco):
    # ingolstadt1's one signal: 104010354_1 carries straight-on and right-turning
    # vehicles; phase rrrGGGrr greens its right turn only, for the side road
    # 164051413, whose left turn has no other phase.
    from citybrain import kernels

    net = load_network(resco / "ingolstadt1" / "ingolstadt1.net.xml")
    controller = make_controller("citybrain", net)
    lanes = net.lane_index
    shared, side_left = lanes["104010354_1"], lanes["164051413_2"]
    main, side = net.phase_states.index("GGgGrGGG"), net.phase_states.index("rrrGGGrr")

    def entry(phase, lane):
        k = [k for k in range(controller.phase_lane_ptr[phase], controller.phase_lane_ptr[phase + 1])
             if controller.signal_lane[controller.phase_lane[k]] == lane]
        return controller.phase_lane_share[k[0]], controller.phase_lane_holds[k[0]]
    assert entry(main, shared) == (1.0, True)
    assert entry(side, shared) == (controller.config.split_lane_share, False)
    assert entry(side, side_left) == (1.0, True)

    # Main-road green; 11 vehicles queue on the side road's left turn, and vehicles
    # keep arriving on the main road, faster than the shared lane flows in the side phase.
    queued, mean_rate = np.zeros(net.n_lanes), np.zeros(net.n_lanes)
    queued[side_left] = 11.0
    approach = controller.signal_lane[controller.signal_lane_ptr[0]:controller.signal_lane_ptr[1]]
    mean_rate[approach] = 0.15
    mean_rate[shared] = 0.2
    mean_rate[side_left] = 0.05
    arrivals = np.repeat(mean_rate[:, None], controller.arrival_profile.shape[1], axis=1)

    # A long max green, so that a phase held green by a queue it cannot clear runs long in the model.
    long_max_green_s = np.full(net.n_signals, 60.0)

    def choose(holds):
        requested = np.zeros(1, dtype=np.int32)
        signals = signals_in_green(net, main, elapsed_s=20.0)
        kernels.schedule_phases(
            queued, arrivals, mean_rate, np.full(net.n_lanes, 0.5),
            np.zeros(net.n_lanes), np.zeros(net.n_lanes, dtype=bool), controller.signal_lane_ptr,
            controller.signal_lane, net.phase_ptr, controller.phase_lane_ptr, controller.phase_lane,
            controller.phase_lane_share, holds, net.transition_offset, net.needs_clearance, controller.lost_s,
            signals.green_phase, signals.stage, signals.stage_time_s, signals.min_green_s, long_max_green_s,
            controller.config.horizon_s, 100.0, np.full(net.n_lanes, 100.0), controller.config.max_stall_s,
            np.ones(net.n_phases, dtype=bool), controller.queue, requested)
        return requested[0]
    # The side phase is modelled to end once the side road is served, so it is chosen.
    # Were it held green by the shared lane's queue, which it cannot clear, it would look
    # like a phase that never ends, and the main road's two phases would take turns
    # while the side road waits for the stall rule.
    assert choose(controller.phase_lane_holds) == side
    assert choose(np.ones_like(controller.phase_lane_holds)) == net.phase_states.index("GGGrrrrr")
