"""Each numba kernel against its plain-numpy oracle in citybrain.reference."""
import numpy as np
import pytest

from citybrain import kernels, reference
from citybrain.controllers import make_controller
from citybrain.network import load_network

from .conftest import GRID10_NET


def csr(rng, n_rows, max_len, n_cols):
    lengths = rng.integers(0, max_len + 1, n_rows)
    ptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    idx = rng.integers(0, n_cols, ptr[-1]).astype(np.int32)
    return ptr, idx, rng.random(ptr[-1])


@pytest.mark.parametrize("seed", range(5))
def test_zone_demand_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ptr, idx, w = csr(rng, 300, 4, 500)
    halting = rng.poisson(2.0, 500).astype(np.float64)
    fast, slow = np.zeros(300), np.zeros(300)
    kernels.zone_demand(halting, ptr, idx, w, fast)
    reference.zone_demand(halting, ptr, idx, w, slow)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    assert np.any(fast != 0)


@pytest.mark.parametrize("seed", range(5))
def test_phase_pressure_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ptr, term_in, w = csr(rng, 200, 6, 400)
    term_out = rng.integers(0, 400, len(term_in)).astype(np.int32)
    up, down = rng.random(400) * 10, rng.random(400) * 10
    fast, slow = np.zeros(200), np.zeros(200)
    kernels.phase_pressure(up, down, ptr, term_in, term_out, w, fast)
    reference.phase_pressure(up, down, ptr, term_in, term_out, w, slow)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    assert np.any(fast != 0)


def random_signal_state(rng, n_signals):
    n_phases = rng.integers(1, 5, n_signals)
    phase_ptr = np.concatenate(([0], np.cumsum(n_phases))).astype(np.int32)
    return n_phases, phase_ptr


@pytest.mark.parametrize("seed", range(5))
def test_choose_phases_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 400
    n_phases, phase_ptr = random_signal_state(rng, n)
    # Integer scores make ties common, so tie-breaking is tested too.
    score = rng.integers(-3, 6, phase_ptr[-1]).astype(np.float64)
    green = (rng.integers(0, 100, n) % n_phases).astype(np.int32)
    stage = rng.integers(0, 3, n).astype(np.int8)
    t = rng.integers(0, 80, n).astype(np.float64)
    min_g, max_g = np.full(n, 5.0), np.full(n, 60.0)
    fast, slow = np.zeros(n, np.int32), np.zeros(n, np.int32)
    kernels.choose_phases(score, phase_ptr, green, stage, t, min_g, max_g, fast)
    reference.choose_phases(score, phase_ptr, green, stage, t, min_g, max_g, slow)
    np.testing.assert_array_equal(fast, slow)
    assert (fast >= 0).any() and (fast == kernels.KEEP).any()


def random_plans(rng, n_phases):
    """Per signal a plan of 1-4 steps over its phases, greens and interims of a few
    seconds, laid out in a cycle with a random offset."""
    steps = rng.integers(1, 5, len(n_phases))
    plan_ptr = np.concatenate(([0], np.cumsum(steps))).astype(np.int32)
    plan_phase = (rng.integers(0, 100, plan_ptr[-1]) % np.repeat(n_phases, steps)).astype(np.int32)
    green_s = rng.integers(5, 40, plan_ptr[-1]).astype(np.float64)
    interim_s = rng.integers(0, 8, plan_ptr[-1]).astype(np.float64)
    ends = np.zeros(plan_ptr[-1])
    cycle = np.zeros(len(n_phases))
    for signal in range(len(n_phases)):
        lo, hi = plan_ptr[signal], plan_ptr[signal + 1]
        ends[lo:hi] = np.cumsum(green_s[lo:hi] + interim_s[lo:hi]) - interim_s[lo:hi]
        cycle[signal] = (green_s[lo:hi] + interim_s[lo:hi]).sum()
    offset = rng.integers(-50, 50, len(n_phases)).astype(np.float64)
    return plan_ptr, plan_phase, ends % cycle[np.repeat(np.arange(len(n_phases)), steps)], green_s, cycle, offset


@pytest.mark.parametrize("seed", range(5))
def test_actuated_requests_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 400
    n_phases, phase_ptr = random_signal_state(rng, n)
    plan_ptr, plan_phase, _, green_s, _, _ = random_plans(rng, n_phases)
    bounds = [np.where(rng.random(green_s.size) < 0.2, -1.0, green_s * factor) for factor in (0.5, 2.0)]
    green = (rng.integers(0, 100, n) % n_phases).astype(np.int32)
    stage = rng.integers(0, 3, n).astype(np.int8)
    active = rng.random(n) < 0.7
    fast_step, slow_step = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for _ in range(3):
        elapsed = rng.uniform(0, 80, n)
        demand = rng.choice([0.0, 0.3, 2.0], int(phase_ptr[-1]))
        fast, slow = np.full(n, 7, np.int32), np.full(n, 7, np.int32)
        for ops, step, out in ((kernels, fast_step, fast), (reference, slow_step, slow)):
            ops.actuated_requests(plan_ptr, plan_phase, green_s, *bounds, phase_ptr, active, green, stage, elapsed,
                                  demand, step, out)
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(fast_step, slow_step)
        assert (fast[~active] == 7).all()
        assert (fast[active] >= 0).any() and (fast[active] == kernels.KEEP).any()
        # A green past its maximum always ends; one before its minimum never does.
        step_of = plan_ptr[:-1] + fast_step
        longest = np.where(bounds[1][step_of] >= 0, bounds[1][step_of], green_s[step_of])
        shortest = np.where(bounds[0][step_of] >= 0, bounds[0][step_of], green_s[step_of])
        judged = active & (stage == 0) & (np.diff(plan_ptr) > 1)
        assert (fast[judged & (elapsed >= longest)] >= 0).all()
        assert (fast[judged & (elapsed < shortest - 1e-6)] == kernels.KEEP).all()


@pytest.mark.parametrize("seed", range(5))
def test_plan_requests_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 400
    n_phases, phase_ptr = random_signal_state(rng, n)
    plan = random_plans(rng, n_phases)
    green = (rng.integers(0, 100, n) % n_phases).astype(np.int32)
    stage = rng.integers(0, 3, n).astype(np.int8)
    t = rng.integers(0, 50, n).astype(np.float64)
    active = rng.random(n) < 0.7
    fast_step, slow_step = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for time_s in (0.0, 17.0, 333.0):
        # Inactive signals keep whatever the adaptive controller asked for (here 7).
        fast, slow = np.full(n, 7, np.int32), np.full(n, 7, np.int32)
        kernels.plan_requests(*plan, active, green, stage, time_s, fast_step, fast)
        reference.plan_requests(*plan, active, green, stage, time_s, slow_step, slow)
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(fast_step, slow_step)
        assert (fast[~active] == 7).all()
        assert (fast[active] >= 0).any() and (fast[active] == kernels.KEEP).any()
    for signal in range(n):
        for time_s in (0.0, 41.0, 1000.5):
            assert (kernels.plan_position(*plan[:1], *plan[2:], time_s, signal)
                    == pytest.approx(reference.plan_position(*plan[:1], *plan[2:], time_s, signal)))


def test_advance_signals_matches_reference_over_many_steps():
    rng = np.random.default_rng(1)
    net = load_network(GRID10_NET)
    n = net.n_signals
    yellow = rng.choice([2.0, 2.5, 3.0, 4.0], n)
    all_red = rng.choice([0.0, 0.0, 1.0, 2.0], n)
    min_g = np.full(n, 5.0)
    # The grid has no crossings: mark some changes as ending one, at some signals with a walk clearance.
    ends_crossing = net.needs_clearance & (rng.random(net.needs_clearance.size) < 0.5)
    crossing_s = rng.choice([0.0, 5.0, 2.5], n)
    # And give some changes an interim of the program's own (1-3 steps of 1-4.5 s).
    interim_steps = np.where(rng.random(net.needs_clearance.size) < 0.3, rng.integers(1, 4, net.needs_clearance.size), 0)
    interim_ptr = np.concatenate(([0], np.cumsum(interim_steps))).astype(np.int64)
    interim_s = rng.choice([1.0, 2.0, 2.5, 4.5], interim_ptr[-1])
    on_plan = rng.random(n) < 0.5   # only signals on their plan play the program's interims
    states = []
    for _ in range(2):
        states.append(dict(green=np.zeros(n, np.int32), nxt=np.zeros(n, np.int32),
                           stage=np.zeros(n, np.int8), t=np.zeros(n), changed=np.zeros(n, bool)))
    n_phases = np.diff(net.phase_ptr)
    stages_seen = set()
    for _ in range(300):
        requested = np.where(rng.random(n) < 0.3, rng.integers(0, 100, n) % n_phases, -1).astype(np.int32)
        for impl, s in zip((kernels, reference), states):
            impl.advance_signals(requested, 1.0, net.phase_ptr, net.transition_offset, net.needs_clearance,
                                 ends_crossing, crossing_s, yellow, all_red, interim_ptr, interim_s, on_plan, min_g,
                                 s["green"],
                                 s["nxt"], s["stage"], s["t"], s["changed"])
        for key in states[0]:
            np.testing.assert_array_equal(states[0][key], states[1][key], err_msg=key)
        stages_seen |= set(states[0]["stage"].tolist())
    assert stages_seen == {kernels.STAGE_GREEN, kernels.STAGE_YELLOW, kernels.STAGE_ALL_RED, kernels.STAGE_CROSSING,
                           kernels.STAGE_INTERIM}


def test_count_conflicting_greens_matches_reference():
    rng = np.random.default_rng(3)
    net = load_network(GRID10_NET)
    offsets = net.link_offset
    protected = rng.random(int(offsets[-1])) < 0.4
    fast = np.zeros(net.n_signals, np.int64)
    slow = np.zeros(net.n_signals, np.int64)
    kernels.count_conflicting_greens(protected, offsets, net.conflict_offset, net.conflict, fast)
    reference.count_conflicting_greens(protected, offsets, net.conflict_offset, net.conflict, slow)
    np.testing.assert_array_equal(fast, slow)
    assert fast.sum() > 0



@pytest.mark.parametrize("seed", range(5))
def test_merge_lane_values_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n_lanes, n = 300, 500
    lanes = rng.integers(-1, n_lanes, n).astype(np.int32)      # unknown lanes, and duplicates
    vehicles = rng.normal(5, 8, n).astype(np.float32)
    vehicles[rng.random(n) < 0.05] = np.nan
    occupancy = (np.abs(rng.normal(0.3, 0.5, n))).astype(np.float32)
    capacity = rng.uniform(5, 20, n_lanes)
    seen = rng.integers(0, 20, n_lanes).astype(np.float64)
    bounds = np.array([0.0, 0.0, 1.0])
    # Even seeds: a frame without halting counts; odd: halting, sometimes above the vehicles.
    halting = np.zeros(0, np.float32) if seed % 2 == 0 else rng.normal(3, 5, n).astype(np.float32)
    results = []
    for ops in (kernels, reference):
        valid = np.ones(n, bool)
        stores = (np.zeros(n_lanes), np.full(n_lanes, -1.0), np.zeros(n_lanes))
        lane_seen = seen.copy()
        ops.merge_lane_values(lanes, 10.0, capacity, (vehicles, halting, occupancy), stores, bounds, lane_seen, valid)
        results.append((valid, *stores, lane_seen))
    for fast, slow in zip(*results):
        np.testing.assert_array_equal(fast, slow)
    valid, stored, untouched = results[0][:3]
    assert valid.any() and not valid.all() and not valid[lanes < 0].any()
    assert (stored != 0).any()
    assert (untouched == -1.0).all() if halting.size == 0 else (untouched != -1.0).any()
    if halting.size:
        assert not valid[halting > vehicles].any() and (halting > vehicles).any()


@pytest.mark.parametrize("seed", range(3))
def test_merge_lanes_in_order_matches_reference(seed):
    """The whole-network merge: same result as the reference, and as the general kernel given lanes 0..n-1."""
    rng = np.random.default_rng(seed)
    n = 1000
    capacity = rng.uniform(5, 20, n)
    fields = [rng.normal(5, 8, n).astype(np.float32), rng.normal(3, 6, n).astype(np.float32),
              rng.normal(0.3, 0.5, n).astype(np.float32)]
    for field in fields:
        field[rng.random(n) < 0.03] = np.nan
    seen = rng.integers(0, 20, n).astype(np.float64)           # some lanes already set by a newer frame
    results = []
    for merge in (kernels.merge_lanes_in_order, reference.merge_lanes_in_order, None):
        valid = np.ones(n, bool)
        stores = (np.full(n, -1.0), np.full(n, -1.0), np.full(n, -1.0))
        lane_seen = seen.copy()
        if merge is None:
            kernels.merge_lane_values(np.arange(n, dtype=np.int32), 10.0, capacity, tuple(fields), stores,
                                      np.array([0.0, 0.0, 1.0]), lane_seen, valid)
        else:
            merge(10.0, capacity, *fields, stores, lane_seen, valid)
        results.append((valid, *stores, lane_seen))
    for other in results[1:]:
        for fast, slow in zip(results[0], other):
            np.testing.assert_array_equal(fast, slow)
    valid, vehicles = results[0][:2]
    assert valid.any() and not valid.all()
    assert (vehicles[valid & (seen <= 10.0)] >= 0).all() and (vehicles[~valid | (seen > 10.0)] == -1.0).all()
    assert not valid[fields[1] > fields[0]].any()


@pytest.mark.parametrize("seed", range(3))
def test_stale_signals_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ptr, lanes, _ = csr(rng, 200, 6, 400)
    lane_seen = rng.uniform(0, 20, 400)
    fast, slow = np.zeros(200, bool), np.zeros(200, bool)
    kernels.stale_signals(lane_seen, 20.0, 5.0, ptr, lanes, fast)
    reference.stale_signals(lane_seen, 20.0, 5.0, ptr, lanes, slow)
    np.testing.assert_array_equal(fast, slow)
    assert fast.any() and not fast.all()


@pytest.mark.parametrize("controller", ["maxpressure", "citybrain"])
def test_engine_on_numpy_reference_decides_exactly_as_on_numba(controller):
    """The whole decision path, not just each kernel: 120 steps of random frames
    on grid10x10 give the same commands with either set of kernels."""
    from citybrain.engine import Engine
    from citybrain.frame import DetectorFrame

    net = load_network(GRID10_NET)
    histories = []
    for ops in (kernels, reference):
        engine = Engine(net, make_controller(controller, net, kernels=ops), kernels=ops)
        rng = np.random.default_rng(3)
        history = []
        for t in range(120):
            vehicles = rng.poisson(3.0, net.n_lanes).astype(np.float64)
            commands = engine.step(DetectorFrame(float(t), vehicles, vehicles // 2, vehicles / 30))
            history.append((commands.signals.tolist(), commands.states))
        histories.append(history)
    assert histories[0] == histories[1]
    switched = sum(len(signals) for signals, _ in histories[0][1:])
    assert switched > 100   # signals did switch


def signal_states(rng, net, max_elapsed_s):
    """Random stage-machine state of every signal: green phase, stage, time in stage."""
    n_phases = np.diff(net.phase_ptr)
    green = (rng.integers(0, 100, net.n_signals) % n_phases).astype(np.int32)
    stage = rng.integers(0, 3, net.n_signals).astype(np.int8)
    elapsed = rng.integers(0, max_elapsed_s, net.n_signals).astype(np.float64)
    return green, stage, elapsed


@pytest.mark.parametrize("seed", range(3))
def test_preemption_lead_matches_reference(seed):
    rng = np.random.default_rng(seed)
    net = load_network(GRID10_NET)
    n = net.n_signals
    n_phases = np.diff(net.phase_ptr)
    yellow = rng.choice([2.0, 3.0, 4.0], n)
    all_red = rng.choice([0.0, 1.0, 2.0], n)
    green, stage, elapsed = signal_states(rng, net, 8)
    stage[rng.random(n) < 0.2] = kernels.STAGE_CROSSING
    ends_crossing = net.needs_clearance & (rng.random(net.needs_clearance.size) < 0.5)
    crossing_s = rng.choice([0.0, 5.0], n)
    coming = (rng.integers(0, 100, n) % n_phases).astype(np.int32)
    n_req = 300
    signal = rng.integers(0, n, n_req).astype(np.int32)
    phase = (rng.integers(0, 100, n_req) % n_phases[signal]).astype(np.int32)
    lane_ptr, lanes, _ = csr(rng, n_req, 3, net.n_lanes)
    halting = np.where(rng.random(net.n_lanes) < 0.5, rng.integers(0, 12, net.n_lanes), 0).astype(np.float64)
    fast, slow = np.zeros(n_req), np.zeros(n_req)
    for impl, out in ((kernels, fast), (reference, slow)):
        impl.preemption_lead_s(signal, phase, lane_ptr, lanes, halting, net.phase_ptr, net.transition_offset,
                               net.needs_clearance, ends_crossing, crossing_s, yellow, all_red, green, coming,
                               stage, elapsed,
                               2.0, 2.0, 2.0, out)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    assert len(set(fast.tolist())) > 10


@pytest.mark.parametrize("seed", range(3))
def test_note_discharge_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 500
    previous = rng.poisson(3.0, n).astype(np.float64)
    halting = np.where(rng.random(n) < 0.5, previous, np.maximum(previous - 1, 0))   # some queues shrank
    last_seen = np.where(rng.random(n) < 0.5, 0.0, 20.0)
    results = []
    for ops in (kernels, reference):
        before, last = previous.copy(), last_seen.copy()
        ops.note_discharge(halting, before, 30.0, last)
        results.append((before, last))
    for fast, slow in zip(*results):
        np.testing.assert_array_equal(fast, slow)
    last = results[0][1]
    assert (last == 30.0).any() and (last < 30.0).any()


@pytest.mark.parametrize("seed", range(3))
def test_estimate_loop_queues_matches_reference_over_many_periods(seed):
    rng = np.random.default_rng(seed)
    n_loops, n_detected, n_lanes = 60, 40, 80
    lane = rng.choice(n_lanes, n_detected, replace=False).astype(np.int32)
    stop_ptr, stop_loop, stop_share = csr(rng, n_detected, 2, n_loops)
    green_share = rng.choice([0.0, 1.0, 0.4], n_lanes)
    advance_ptr, advance_loop, advance_share = csr(rng, n_detected, 2, n_loops)
    capacity = rng.uniform(1.0, 12.0, n_detected)
    crossing = np.where(rng.random(n_detected) < 0.1, 0.0, rng.uniform(1.0, 8.0, n_detected))
    states = [tuple(np.zeros(n_detected) for _ in range(3)) for _ in (kernels, reference)]
    for _ in range(200):
        passed = rng.poisson(0.4, n_loops).astype(np.float64)
        occupied = np.where(rng.random(n_loops) < 0.3, rng.choice([1.0, 0.5, 0.0], n_loops), 0.0)
        outputs = []
        for ops, (queue, transit, quiet) in zip((kernels, reference), states):
            frame = tuple(np.zeros(n_lanes) for _ in range(3))
            ops.estimate_loop_queues(passed, occupied, 1.0, lane, stop_ptr, stop_loop, stop_share, advance_ptr,
                                     advance_loop, advance_share, capacity, crossing, 0.95, 2.0, green_share, 0.5,
                                     queue, transit, quiet, *frame)
            outputs.append((queue, transit, quiet, *frame))
        for fast, slow in zip(*outputs):
            np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    queue = states[0][0]
    assert (queue > 0).any() and (queue <= capacity).all()
    assert (np.diff(stop_ptr) == 0).any()       # some lanes have only upstream loops


def test_decide_pressure_matches_reference():
    rng = np.random.default_rng(7)
    net = load_network(GRID10_NET)
    green, stage, elapsed = signal_states(rng, net, 70)
    halting = rng.poisson(2.0, net.n_lanes).astype(np.float64)
    min_green, max_green = np.full(net.n_signals, 6.0), np.full(net.n_signals, 60.0)
    results = []
    for ops in (kernels, reference):
        out = [np.zeros(net.n_lanes), np.zeros(net.n_phases), np.zeros(net.n_signals, dtype=np.int32)]
        ops.decide_pressure(halting, net.zone_ptr, net.zone_lane, net.zone_weight, net.term_ptr, net.term_in_lane,
                            net.term_out_lane, net.term_weight, net.phase_ptr, green, stage, elapsed, min_green,
                            max_green, *out)
        results.append(out)
    for fast, slow in zip(*results):
        np.testing.assert_allclose(fast, slow, rtol=1e-12)
    requested = results[0][-1]
    assert (requested >= 0).any() and (requested < 0).any()


def test_state_codes_match_reference():
    rng = np.random.default_rng(3)
    net = load_network(GRID10_NET)
    green, stage, _ = signal_states(rng, net, 10)
    n_phases = np.diff(net.phase_ptr).astype(np.int64)
    following = (green + 1) % n_phases
    base = np.concatenate(([0], np.cumsum(3 * n_phases * n_phases)[:-1])).astype(np.int64)
    signals = rng.choice(net.n_signals, 40, replace=False).astype(np.int32)
    fast, slow = np.zeros(net.n_signals, dtype=np.int64), np.zeros(net.n_signals, dtype=np.int64)
    kernels.state_codes(signals, base, n_phases, stage, green, following.astype(np.int32), fast)
    reference.state_codes(signals, base, n_phases, stage, green, following.astype(np.int32), slow)
    np.testing.assert_array_equal(fast, slow)
    assert len(set(fast[:40].tolist())) == 40       # one code per (signal, stage, phase, next phase)


def test_lane_schedule_inputs_match_reference_over_many_periods():
    rng = np.random.default_rng(11)
    net = load_network(GRID10_NET)
    controller = make_controller("citybrain", net)
    c = controller.config
    n = net.n_lanes
    states = [(np.zeros(n), np.zeros(n), np.zeros(n)) for _ in (kernels, reference)]  # previous, last, mean rate
    for step in range(30):
        vehicles = rng.poisson(3.0, n).astype(np.float64)
        halting = np.minimum(vehicles, rng.poisson(2.0, n))
        outputs = []
        for ops, (previous, last, mean_rate) in zip((kernels, reference), states):
            out = [np.zeros(n) for _ in range(5)] + [np.zeros(n, dtype=bool)]
            queued, approaching, rate, service, wait, blocked = out
            ops.lane_schedule_inputs(halting, vehicles, float(step), net.zone_ptr, net.zone_lane, net.zone_weight,
                                     controller.arrival_window_s, c.rate_memory_s, c.saturation_veh_per_s,
                                     controller.lane_out_ptr, controller.lane_out, controller.exit_storage_veh,
                                     c.downstream_weight, c.blocked_after_s, previous, last, queued,
                                     approaching, rate, mean_rate, service, wait, blocked)
            outputs.append((previous, last, mean_rate, queued, approaching, rate, service, wait, blocked))
        for fast, slow in zip(*outputs):
            np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    _, _, mean_rate, queued, _, rate, service, wait, blocked = outputs[0]
    assert (mean_rate > 0).any() and (wait > 0).any() and blocked.any() and not blocked.all()


def test_arrival_profile_matches_reference_and_places_vehicles_by_distance():
    rng = np.random.default_rng(5)
    net = load_network(GRID10_NET)
    controller = make_controller("citybrain", net)
    n = net.n_lanes
    vehicles = rng.poisson(3.0, n).astype(np.float64)
    halting = np.minimum(vehicles, rng.poisson(1.0, n))
    mean_rate = rng.uniform(0, 0.3, n)
    profiles = []
    for ops in (kernels, reference):
        profile = np.full_like(controller.arrival_profile, np.nan)
        ops.arrival_profile(vehicles, halting, net.zone_ptr, net.zone_lane, net.zone_weight, controller.zone_start_s,
                            controller.zone_end_s, controller.arrival_window_s, mean_rate, profile)
        profiles.append(profile)
    np.testing.assert_allclose(*profiles, rtol=1e-12, atol=1e-12)
    # Every moving vehicle of a zone is placed once, before its reach; the mean rate after it.
    profile = profiles[0]
    within = np.arange(profile.shape[1])[None, :] < controller.arrival_window_s[:, None]
    moving = np.zeros(n)
    np.add.at(moving, np.repeat(np.arange(n), np.diff(net.zone_ptr)),
              net.zone_weight * np.maximum(vehicles - halting, 0)[net.zone_lane])
    np.testing.assert_allclose(np.where(within, profile, 0.0).sum(axis=1), moving, rtol=1e-9)
    np.testing.assert_allclose(profile[~within], np.broadcast_to(mean_rate[:, None], profile.shape)[~within])
    # A vehicle on the upstream member of a zone arrives after one on the lane itself.
    lane = int(np.flatnonzero(np.diff(net.zone_ptr) >= 2)[0])
    upstream = net.zone_lane[net.zone_ptr[lane] + 1]
    arrival_second = {}
    for member in (lane, upstream):
        alone = np.zeros(n)
        alone[member] = 1.0
        kernels.arrival_profile(alone, np.zeros(n), net.zone_ptr, net.zone_lane, net.zone_weight,
                                controller.zone_start_s, controller.zone_end_s, controller.arrival_window_s,
                                np.zeros(n), profile)
        arrival_second[member] = np.average(np.arange(profile.shape[1]), weights=profile[lane])
    assert arrival_second[upstream] > arrival_second[lane] + 5.0


@pytest.mark.parametrize("seed", range(3))
def test_schedule_phases_matches_reference(seed):
    """The rolling-horizon schedule: same choice per signal as the plain numpy oracle
    (which has no early stop), on random queues, arrivals, blocked and full lanes."""
    rng = np.random.default_rng(seed)
    net = load_network(GRID10_NET)
    controller = make_controller("citybrain", net)
    n = net.n_lanes
    green, stage, elapsed = signal_states(rng, net, 70)
    queued = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0, 12, n))
    profile = np.where(rng.random((n, 60)) < 0.5, 0.0, rng.uniform(0, 0.6, (n, 60)))
    mean_rate = rng.uniform(0, 0.3, n)
    service = np.where(rng.random(n) < 0.05, 0.0, 0.5)
    wait = rng.uniform(0, 20, n)
    blocked = rng.random(n) < 0.1
    share = np.where(rng.random(controller.phase_lane.size) < 0.3, 0.5, 1.0)   # some permissive-only lanes
    holds = rng.random(controller.phase_lane.size) < 0.8   # some lanes that do not keep their phase green
    # Past max green for a good share of the signals.
    min_green, max_green = np.full(net.n_signals, 6.0), np.full(net.n_signals, 30.0)
    # Seconds each lane's queue has stood at time 1000 s: a tenth past the 120 s stall limit.
    last_discharge = 1000.0 - np.where(rng.random(n) < 0.1, rng.uniform(120, 200, n), rng.uniform(0, 100, n))
    # Every fifth signal: nobody waits but on the lanes its green serves, so no other phase calls.
    for signal in range(0, net.n_signals, 5):
        first = controller.signal_lane_ptr[signal]
        g = net.phase_ptr[signal] + green[signal]
        served = set(controller.phase_lane[controller.phase_lane_ptr[g]:controller.phase_lane_ptr[g + 1]].tolist())
        for position in range(controller.signal_lane_ptr[signal + 1] - first):
            if position not in served:
                queued[controller.signal_lane[first + position]] = 0.0
    past_max = [s for s in range(net.n_signals)
                if stage[s] == kernels.STAGE_GREEN and elapsed[s] >= max_green[s] and net.phase_ptr[s + 1] - net.phase_ptr[s] > 1]
    calls = {kernels._conflicting_call(s, green[s], queued, service, controller.signal_lane_ptr, controller.signal_lane,
                                       net.phase_ptr, controller.phase_lane_ptr, controller.phase_lane) for s in past_max}
    assert calls == {True, False}   # past max green, both called and resting signals are compared
    # Every third signal runs in cyclic order: only some of its phases may start.
    allowed = np.ones(net.n_phases, dtype=bool)
    for signal in range(0, net.n_signals, 3):
        allowed[net.phase_ptr[signal]:net.phase_ptr[signal + 1]] = rng.random(net.phase_ptr[signal + 1]
                                                                              - net.phase_ptr[signal]) < 0.4
    decisions = []
    for ops in (kernels, reference):
        requested = np.zeros(net.n_signals, dtype=np.int32)
        ops.schedule_phases(queued, profile, mean_rate, service, wait, blocked,
                            controller.signal_lane_ptr, controller.signal_lane, net.phase_ptr,
                            controller.phase_lane_ptr, controller.phase_lane, share, holds, net.transition_offset,
                            net.needs_clearance, controller.lost_s, green, stage, elapsed, min_green, max_green, 60.0,
                            1000.0, last_discharge, 120.0, allowed, controller.queue, requested)
        decisions.append(requested)
    np.testing.assert_array_equal(*decisions)
    chosen = np.flatnonzero(decisions[0] >= 0)
    assert allowed[net.phase_ptr[chosen] + decisions[0][chosen]].all()
    deciding = (stage == kernels.STAGE_GREEN) & (elapsed >= min_green)
    assert (decisions[0][deciding] >= 0).any() and (decisions[0][deciding] == kernels.KEEP).any()
    assert (decisions[0][~deciding] == kernels.KEEP).all()
    # With no lane stalled, the schedule alone decides: some signals change their choice.
    unstalled = np.zeros(net.n_signals, dtype=np.int32)
    kernels.schedule_phases(queued, profile, mean_rate, service, wait, blocked,
                            controller.signal_lane_ptr, controller.signal_lane, net.phase_ptr,
                            controller.phase_lane_ptr, controller.phase_lane, share, holds, net.transition_offset,
                            net.needs_clearance, controller.lost_s, green, stage, elapsed, min_green, max_green, 60.0,
                            1000.0, np.full(n, 1000.0), 120.0, allowed, controller.queue, unstalled)
    assert (unstalled != decisions[0]).any()


@pytest.mark.parametrize("seed", range(3))
def test_cyclic_starts_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 300
    n_phases, phase_ptr = random_signal_state(rng, n)
    plan_ptr, plan_phase, *_ = random_plans(rng, n_phases)
    plan_min = np.where(rng.random(plan_ptr[-1]) < 0.5, rng.integers(5, 20, plan_ptr[-1]), -1.0)
    plan_max = np.where(rng.random(plan_ptr[-1]) < 0.5, rng.integers(20, 90, plan_ptr[-1]), -1.0)
    cyclic = rng.random(n) < 0.6
    green = (rng.integers(0, 100, n) % n_phases).astype(np.int32)
    stage = rng.integers(0, 3, n).astype(np.int8)
    called = rng.random(phase_ptr[-1]) < 0.3
    outputs = []
    for ops in (kernels, reference):
        out = (np.zeros(n, np.int32), np.zeros(phase_ptr[-1], bool), np.zeros(n), np.zeros(n))
        ops.cyclic_starts(plan_ptr, plan_phase, plan_min, plan_max, cyclic, phase_ptr, green, stage, 30.0, called,
                          *out)
        outputs.append(out)
    for fast, slow in zip(*outputs):
        np.testing.assert_array_equal(fast, slow)
    allowed = outputs[0][1]
    owner = np.repeat(np.arange(n), n_phases)
    assert allowed[~cyclic[owner]].all() and not allowed[cyclic[owner]].all()
    assert allowed[phase_ptr[:-1] + green].all()     # keeping the current phase is always allowed


def test_cyclic_order_skips_the_greens_nobody_calls():
    """One signal, a plan of four greens in order 0-1-2-3, showing 0: the next green
    may always start; with no call on 1 and 2, green 3 (called) may too, and 1 and 2
    are skipped; a call on 1 stops the skipping there."""
    phase_ptr = np.array([0, 4], np.int32)
    plan_ptr, plan_phase = np.array([0, 4], np.int32), np.arange(4, dtype=np.int32)
    bounds = np.full(4, -1.0)
    for calls, allowed in (((3,), [0, 1, 2, 3]), ((1, 3), [0, 1]), ((), [0, 1]), ((0,), [0, 1])):
        called = np.isin(np.arange(4), calls)
        for ops in (kernels, reference):
            start_allowed = np.zeros(4, bool)
            ops.cyclic_starts(plan_ptr, plan_phase, bounds, bounds, np.array([True]), phase_ptr,
                              np.array([0], np.int32), np.zeros(1, np.int8), 30.0, called, np.zeros(1, np.int32),
                              start_allowed, np.zeros(1), np.zeros(1))
            assert np.flatnonzero(start_allowed).tolist() == allowed, (ops.__name__, calls)
