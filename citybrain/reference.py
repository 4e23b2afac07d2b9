"""Plain-numpy oracles of the kernels in `citybrain.kernels`.

Written for clarity, not speed: vectorised where numpy makes that natural, a
loop where the kernel's logic is sequential. Tests hold the kernels to these,
and `citybrain bench` times them side by side.
"""
from __future__ import annotations

import numpy as np

from .kernels import (EMPTY_QUEUE_VEH, KEEP, SCORE_TOLERANCE, STAGE_ALL_RED, STAGE_CROSSING, STAGE_GREEN,
                      STAGE_INTERIM, STAGE_YELLOW)

__all__ = ["zone_demand", "phase_pressure", "choose_phases", "decide_pressure", "lane_schedule_inputs",
           "arrival_profile", "schedule_phases", "plan_position", "plan_requests", "actuated_requests",
           "cyclic_starts",
           "advance_signals", "count_conflicting_greens", "merge_lane_values", "merge_lanes_in_order",
           "stale_signals", "preemption_lead_s",
           "note_discharge", "estimate_loop_queues", "state_codes"]


def _segment_sum(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    return np.bincount(owner, weights=values, minlength=len(ptr) - 1)


def _segment_max(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Largest value per segment, 0 for an empty one (values are non-negative)."""
    out = np.zeros(len(ptr) - 1)
    owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    np.maximum.at(out, owner, values)
    return out


def zone_demand(lane_values, zone_ptr, zone_lane, zone_weight, out):
    out[:] = _segment_sum(zone_weight * lane_values[zone_lane], zone_ptr)


def phase_pressure(upstream, downstream, term_ptr, term_in, term_out, term_weight, out):
    out[:] = _segment_sum(term_weight * (upstream[term_in] - downstream[term_out]), term_ptr)


def choose_phases(score, phase_ptr, green_phase, stage, stage_time_s, min_green_s, max_green_s, requested):
    requested[:] = KEEP
    for signal in range(len(requested)):
        first, last = phase_ptr[signal], phase_ptr[signal + 1]
        if stage[signal] != STAGE_GREEN or stage_time_s[signal] < min_green_s[signal] or last - first < 2:
            continue
        scores = score[first:last]
        current = green_phase[signal]
        best = _first_best(scores, range(len(scores)))
        if stage_time_s[signal] >= max_green_s[signal]:
            requested[signal] = _first_best(scores, [p for p in range(len(scores)) if p != current])
        elif best != current and scores[best] > scores[current] + SCORE_TOLERANCE:
            requested[signal] = best


def _first_best(scores, candidates) -> int:
    """The best-scoring candidate, scanning in order; a later one must beat it by more than the tolerance."""
    best = -1
    for p in candidates:
        if best < 0 or scores[p] > scores[best] + SCORE_TOLERANCE:
            best = p
    return best


def decide_pressure(halting, zone_ptr, zone_lane, zone_weight, term_ptr, term_in, term_out, term_weight, phase_ptr,
                    green_phase, stage, stage_time_s, min_green_s, max_green_s, demand, score, requested):
    zone_demand(halting, zone_ptr, zone_lane, zone_weight, demand)
    phase_pressure(demand, demand, term_ptr, term_in, term_out, term_weight, score)
    choose_phases(score, phase_ptr, green_phase, stage, stage_time_s, min_green_s, max_green_s, requested)


def lane_schedule_inputs(halting, vehicles, time_s, zone_ptr, zone_lane, zone_weight, arrival_window_s,
                         rate_memory_s, saturation_veh_per_s, lane_out_ptr, lane_out, exit_storage_veh,
                         downstream_weight, blocked_after_s, previous_halting, last_discharge_s, queued,
                         approaching, arrival_rate, mean_arrival_rate, service_rate, downstream_wait_s, blocked):
    zone_demand(halting, zone_ptr, zone_lane, zone_weight, queued)
    zone_demand(vehicles, zone_ptr, zone_lane, zone_weight, approaching)
    note_discharge(halting, previous_halting, time_s, last_discharge_s)
    arrival_rate[:] = np.maximum(approaching - queued, 0.0) / arrival_window_s
    mean_arrival_rate += (arrival_rate - mean_arrival_rate) / rate_memory_s
    blocked[:] = time_s - last_discharge_s >= blocked_after_s
    counts = np.diff(lane_out_ptr)
    owner = np.repeat(np.arange(len(counts)), counts)
    not_full = np.bincount(owner, weights=halting[lane_out] < exit_storage_veh[lane_out], minlength=len(counts))
    service_rate[:] = np.where((counts > 0) & (not_full == 0), 0.0, saturation_veh_per_s)
    waits = np.bincount(owner, weights=queued[lane_out], minlength=len(counts))
    downstream_wait_s[:] = downstream_weight * waits / np.maximum(counts, 1) / saturation_veh_per_s


def arrival_profile(vehicles, halting, zone_ptr, zone_lane, zone_weight, zone_start_s, zone_end_s,
                    arrival_window_s, mean_arrival_rate, profile):
    seconds = np.arange(profile.shape[1])
    profile[:] = np.where(seconds[None, :] >= arrival_window_s[:, None], mean_arrival_rate[:, None], 0.0)
    owner = np.repeat(np.arange(len(zone_ptr) - 1), np.diff(zone_ptr))
    moving = zone_weight * np.maximum(vehicles[zone_lane] - halting[zone_lane], 0.0)
    # Share of each member's stretch [start, end) that falls in each second; no length: its start second.
    span = zone_end_s - zone_start_s
    overlap = np.clip(np.minimum(seconds[None, :] + 1.0, zone_end_s[:, None])
                      - np.maximum(seconds[None, :], zone_start_s[:, None]), 0.0, None)
    share = np.where(span[:, None] >= 1e-9, overlap / np.maximum(span, 1e-9)[:, None],
                     seconds[None, :] == np.floor(zone_start_s)[:, None])
    np.add.at(profile, owner, moving[:, None] * share)


def _schedule_cost(start, current, signal, inputs, structure, stage_time_s, min_green_s, max_green_s, horizon_s,
                   second):
    """The same fluid schedule as kernels._schedule_cost, over numpy arrays of the
    signal's lanes (no early stop)."""
    (queued, arrival_profile, mean_arrival_rate, service_rate, downstream_wait_s, blocked) = inputs
    (signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr, phase_lane, phase_lane_share, phase_lane_holds,
     transition_offset, needs_clearance, lost_s) = structure
    lanes = signal_lane[signal_lane_ptr[signal]:signal_lane_ptr[signal + 1]]
    n_phases = phase_ptr[signal + 1] - phase_ptr[signal]
    served_by = [phase_lane[phase_lane_ptr[g]:phase_lane_ptr[g + 1]]
                 for g in range(phase_ptr[signal], phase_ptr[signal + 1])]
    share_of = [phase_lane_share[phase_lane_ptr[g]:phase_lane_ptr[g + 1]]
                for g in range(phase_ptr[signal], phase_ptr[signal + 1])]
    holds_of = [phase_lane_holds[phase_lane_ptr[g]:phase_lane_ptr[g + 1]]
                for g in range(phase_ptr[signal], phase_ptr[signal + 1])]
    queue = queued[lanes].astype(np.float64)
    can_serve = service_rate[lanes] > 0.0
    clock = {"t": 0.0, "cost": 0.0}

    def arrive():
        second = int(clock["t"])
        queue[:] += arrival_profile[lanes, second] if second < arrival_profile.shape[1] else mean_arrival_rate[lanes]

    def wait_one_second():
        arrive()
        clock["cost"] += queue.sum()
        clock["t"] += 1.0

    phase, previous, continuing = start, current, start == current
    while clock["t"] < horizon_s:
        if phase < 0 and second >= 0:
            phase, second = second, -1
        if phase < 0:
            waiting = np.array([queue[served_by[p]][can_serve[served_by[p]]].sum() if p != previous else -1.0
                                for p in range(n_phases)])
            if waiting.max() < EMPTY_QUEUE_VEH:
                wait_one_second()
                continue
            phase = int(np.argmax(waiting))
        if continuing:
            green_s, least_s = stage_time_s[signal], 0.0
        else:
            if needs_clearance[transition_offset[signal] + previous * n_phases + phase]:
                for _ in range(int(np.ceil(lost_s[signal]))):
                    if clock["t"] >= horizon_s:
                        break
                    wait_one_second()
            green_s, least_s = 0.0, min_green_s[signal]
        mine = served_by[phase]
        rate = np.where(continuing & blocked[lanes[mine]], 0.0, service_rate[lanes[mine]] * share_of[phase])
        holding = holds_of[phase]
        while clock["t"] < horizon_s:
            arrive()
            served = np.minimum(queue[mine], rate)
            queue[mine] -= served
            clock["cost"] += (served * downstream_wait_s[lanes[mine]]).sum() + queue.sum()
            clock["t"] += 1.0
            green_s += 1.0
            if green_s >= max_green_s[signal]:
                break
            if green_s >= least_s and not ((queue[mine] >= EMPTY_QUEUE_VEH) & (rate > 0.0) & holding).any():
                break
        previous, phase, continuing = phase, -1, False
    return clock["cost"]


def schedule_phases(queued, arrival_profile, mean_arrival_rate, service_rate, downstream_wait_s,
                    blocked, signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr, phase_lane, phase_lane_share,
                    phase_lane_holds, transition_offset, needs_clearance, lost_s, green_phase, stage, stage_time_s,
                    min_green_s, max_green_s, horizon_s, time_s, last_discharge_s, max_stall_s, start_allowed, queue,
                    requested):
    inputs = (queued, arrival_profile, mean_arrival_rate, service_rate, downstream_wait_s, blocked)
    structure = (signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr, phase_lane, phase_lane_share,
                 phase_lane_holds, transition_offset, needs_clearance, lost_s)
    stalled_s = time_s - last_discharge_s
    requested[:] = KEEP
    for signal in range(len(requested)):
        n_phases = phase_ptr[signal + 1] - phase_ptr[signal]
        if stage[signal] != STAGE_GREEN or stage_time_s[signal] < min_green_s[signal] or n_phases < 2:
            continue
        current = green_phase[signal]
        lanes = signal_lane[signal_lane_ptr[signal]:signal_lane_ptr[signal + 1]]
        longest = np.full(n_phases, -np.inf)   # per phase: the longest stall among the lanes it protects
        for p in range(n_phases):
            g = phase_ptr[signal] + p
            mine = lanes[phase_lane[phase_lane_ptr[g]:phase_lane_ptr[g + 1]]]
            eligible = ((phase_lane_share[phase_lane_ptr[g]:phase_lane_ptr[g + 1]] >= 1.0) & (queued[mine] >= 1.0)
                        & (service_rate[mine] > 0.0) & (stalled_s[mine] >= max_stall_s))
            if p != current and eligible.any() and start_allowed[g]:
                longest[p] = stalled_s[mine][eligible].max()
        if np.isfinite(longest).any():
            requested[signal] = int(np.argmax(longest))   # the first phase on a tie, as the kernel
            continue
        served = [set(phase_lane[phase_lane_ptr[phase_ptr[signal] + p]:phase_lane_ptr[phase_ptr[signal] + p + 1]]
                      .tolist()) for p in range(n_phases)]
        calling = (queued[lanes] >= 1.0) & (service_rate[lanes] > 0.0)
        conflicting_call = any(calling[position] for p in range(n_phases) if p != current
                               for position in served[p] - served[current])
        forced = stage_time_s[signal] >= max_green_s[signal] and conflicting_call
        best, best_cost = -1, np.inf
        for start in range(n_phases):   # ties go to the lower index
            if (forced and start == current) or (start != current and not start_allowed[phase_ptr[signal] + start]):
                continue
            cost = min(_schedule_cost(start, current, signal, inputs, structure, stage_time_s, min_green_s,
                                      max_green_s, horizon_s, second)
                       for second in range(-1, n_phases) if second != start)
            if cost < best_cost - SCORE_TOLERANCE:
                best, best_cost = start, cost
        if best >= 0 and best != current:
            requested[signal] = best


def _step_showing(phases, step, phase):
    """The plan step showing `phase`: `step` if it does, else the next that does, else `step`."""
    if phases[step] == phase:
        return step
    order = (step + 1 + np.arange(len(phases))) % len(phases)
    matches = order[phases[order] == phase]
    return matches[0] if matches.size else step


def cyclic_starts(plan_ptr, plan_phase, plan_min_s, plan_max_s, cyclic, phase_ptr, green_phase, stage,
                  default_max_green_s, called, plan_step, start_allowed, least_green_s, max_green_s):
    least_green_s[:] = 0.0
    max_green_s[:] = default_max_green_s
    owner = np.repeat(np.arange(len(green_phase)), np.diff(phase_ptr))
    start_allowed[:] = ~cyclic[owner]
    for signal in np.flatnonzero(cyclic):
        first, count = plan_ptr[signal], plan_ptr[signal + 1] - plan_ptr[signal]
        phases = plan_phase[first:first + count]
        if stage[signal] == STAGE_GREEN:
            plan_step[signal] = _step_showing(phases, plan_step[signal], green_phase[signal])
        step = plan_step[signal]
        start_allowed[phase_ptr[signal] + green_phase[signal]] = True
        ahead = phases[(step + 1 + np.arange(max(count - 1, 1))) % count]    # the steps after this one, in order
        calls = np.flatnonzero(called[phase_ptr[signal] + ahead])
        start_allowed[phase_ptr[signal] + ahead[:calls[0] + 1 if calls.size else 1]] = True
        if plan_min_s[first + step] >= 0:
            least_green_s[signal] = plan_min_s[first + step]
        if plan_max_s[first + step] >= 0:
            max_green_s[signal] = plan_max_s[first + step]


def plan_position(plan_ptr, plan_end_s, plan_green_s, cycle_s, offset_s, time_s, signal):
    first, stop = plan_ptr[signal], plan_ptr[signal + 1]
    cycle = cycle_s[signal]
    position = (time_s - offset_s[signal]) % cycle
    ends, greens = plan_end_s[first:stop], plan_green_s[first:stop]
    left = (ends - position) % cycle
    inside = np.flatnonzero((left > 0.0) & (left <= greens + 1e-9))
    if inside.size:
        k = int(inside[0])
        return k, float(greens[k] - left[k])
    k = int(np.argmin((ends - greens - position) % cycle))
    return k, -float((position - ends[k - 1]) % cycle)


def plan_requests(plan_ptr, plan_phase, plan_end_s, plan_green_s, cycle_s, offset_s, active, green_phase, stage,
                  time_s, plan_step, requested):
    for signal in np.flatnonzero(active):
        requested[signal] = KEEP
        first, count = plan_ptr[signal], plan_ptr[signal + 1] - plan_ptr[signal]
        if stage[signal] != STAGE_GREEN or count < 2:
            continue
        phases = plan_phase[first:first + count]
        step = plan_step[signal] = _step_showing(phases, plan_step[signal], green_phase[signal])
        position = (time_s - offset_s[signal]) % cycle_s[signal]
        left = (plan_end_s[first + step] - position) % cycle_s[signal]
        if left < 1e-9 or left > 2.0 * plan_green_s[first + step] + 1e-9:
            requested[signal] = phases[(step + 1) % count]


def actuated_requests(plan_ptr, plan_phase, plan_green_s, plan_min_s, plan_max_s, phase_ptr, active, green_phase,
                      stage, stage_time_s, phase_demand, plan_step, requested):
    for signal in np.flatnonzero(active):
        requested[signal] = KEEP
        first, count = plan_ptr[signal], plan_ptr[signal + 1] - plan_ptr[signal]
        if stage[signal] != STAGE_GREEN or count < 2:
            continue
        phases = plan_phase[first:first + count]
        step = plan_step[signal] = _step_showing(phases, plan_step[signal], green_phase[signal])
        bounds = [plan_min_s[first + step], plan_max_s[first + step]]
        shortest, longest = (b if b >= 0 else plan_green_s[first + step] for b in bounds)
        elapsed = stage_time_s[signal]
        if elapsed >= shortest - 1e-9 and (elapsed >= longest - 1e-9
                                           or phase_demand[phase_ptr[signal] + green_phase[signal]] < 0.5):
            following = phases[(step + 1) % count]
            requested[signal] = phases[(step + 2) % count] if following == green_phase[signal] else following


def advance_signals(requested, dt_s, phase_ptr, transition_offset, needs_clearance, ends_crossing,
                    crossing_clearance_s, yellow_s, all_red_s, interim_ptr, interim_s, on_plan, min_green_s,
                    green_phase, next_phase, stage, stage_time_s, changed):
    stage_time_s += dt_s
    # Interims first: their own timing, one signal at a time.
    interim_changed = np.zeros_like(changed)
    interim_done = np.zeros_like(changed)
    for signal in np.flatnonzero(stage == STAGE_INTERIM):
        n = phase_ptr[signal + 1] - phase_ptr[signal]
        t = transition_offset[signal] + green_phase[signal] * n + next_phase[signal]
        ends = np.cumsum(interim_s[interim_ptr[t]:interim_ptr[t + 1]])
        now, before = stage_time_s[signal], stage_time_s[signal] - dt_s
        interim_changed[signal] = np.any((before < ends - 1e-9) & (now >= ends - 1e-9))
        interim_done[signal] = now >= ends[-1] - 1e-9
    n_phases = np.diff(phase_ptr)
    in_green = stage == STAGE_GREEN
    wants = in_green & (requested >= 0) & (requested != green_phase) & (stage_time_s >= min_green_s) \
        & (requested < n_phases)
    target = np.where(wants, requested, 0)
    transition = transition_offset[:-1] + green_phase * n_phases + target
    interim = (interim_ptr[transition + 1] > interim_ptr[transition]) & wants & on_plan
    clearance = needs_clearance[transition] & wants & ~interim
    crossing = ends_crossing[transition] & wants & (crossing_clearance_s > 0) & ~interim
    crossing_done = (stage == STAGE_CROSSING) & (stage_time_s >= crossing_clearance_s)
    yellow_done = (stage == STAGE_YELLOW) & (stage_time_s >= yellow_s)
    all_red_done = (stage == STAGE_ALL_RED) & (stage_time_s >= all_red_s)
    to_all_red = yellow_done & (all_red_s > 0)
    to_green = (yellow_done & ~to_all_red) | all_red_done

    next_phase[wants] = target[wants]
    direct = wants & ~clearance & ~interim
    green_phase[direct] = target[direct]
    stage[interim] = STAGE_INTERIM
    stage[interim_done] = STAGE_GREEN
    green_phase[interim_done] = next_phase[interim_done]
    stage[wants & clearance] = STAGE_YELLOW
    stage[crossing] = STAGE_CROSSING
    stage[crossing_done] = STAGE_YELLOW
    stage[to_all_red] = STAGE_ALL_RED
    stage[to_green] = STAGE_GREEN
    green_phase[to_green] = next_phase[to_green]
    changed[:] = wants | crossing_done | to_all_red | to_green | interim_changed
    stage_time_s[wants | crossing_done | to_all_red | to_green | interim_done] = 0.0


def state_codes(signals, state_base, n_phases, stage, green_phase, next_phase, out):
    n = n_phases[signals]
    out[:len(signals)] = (state_base[signals] + stage[signals].astype(np.int64) * n * n
                          + green_phase[signals] * n + next_phase[signals])


def count_conflicting_greens(protected, link_offset, conflict_offset, conflict, out):
    for signal in range(len(out)):
        start, stop = link_offset[signal], link_offset[signal + 1]
        n = stop - start
        matrix = conflict[conflict_offset[signal]:conflict_offset[signal] + n * n].reshape(n, n)
        green = protected[start:stop]
        out[signal] = int(np.triu(matrix & np.outer(green, green), 1).sum())


def merge_lane_values(lanes, time_s, capacity, values, stores, fixed_bounds, lane_seen_s, valid):
    known = lanes >= 0
    safe = np.where(known, lanes, 0)
    ok = known.copy()
    for f, field in enumerate(values):
        if len(field) == 0:
            continue
        limit = np.where(fixed_bounds[f] > 0, fixed_bounds[f], capacity[safe])
        with np.errstate(invalid="ignore"):
            ok &= (field >= 0) & (field <= limit)
    if len(values[0]) and len(values[1]):
        with np.errstate(invalid="ignore"):
            ok &= values[1] <= values[0]
    valid[:] = ok
    take = ok & (lane_seen_s[safe] <= time_s)
    for f, field in enumerate(values):
        if len(field):
            stores[f][lanes[take]] = field[take]   # a later entry for the same lane wins, as in the kernel
    lane_seen_s[lanes[take]] = time_s


def merge_lanes_in_order(time_s, capacity, vehicles, halting, occupancy, stores, lane_seen_s, valid):
    merge_lane_values(np.arange(len(vehicles), dtype=np.int32), time_s, capacity, (vehicles, halting, occupancy),
                      stores, np.array([0.0, 0.0, 1.0]), lane_seen_s, valid)


def stale_signals(lane_seen_s, now_s, stale_after_s, signal_lane_ptr, signal_lane, out):
    lane_stale = (now_s - lane_seen_s[signal_lane]) > stale_after_s
    out[:] = _segment_sum(lane_stale.astype(np.float64), signal_lane_ptr) > 0


def preemption_lead_s(req_signal, req_phase, req_lane_ptr, req_lane, halting, phase_ptr, transition_offset,
                      needs_clearance, ends_crossing, crossing_clearance_s, yellow_s, all_red_s, green_phase,
                      next_phase, stage, stage_time_s, entry_min_green_s, queue_start_s, queue_headway_s, out):
    n = (phase_ptr[req_signal + 1] - phase_ptr[req_signal]).astype(np.int64)
    base = transition_offset[req_signal]
    clearance = yellow_s[req_signal] + all_red_s[req_signal]
    crossing = crossing_clearance_s[req_signal]
    elapsed = stage_time_s[req_signal]
    current, coming, now = green_phase[req_signal], next_phase[req_signal], stage[req_signal]

    def change(a):   # clearance of going from phase a to the request's phase
        return (clearance * needs_clearance[base + a * n + req_phase]
                + crossing * ends_crossing[base + a * n + req_phase])

    in_green = now == STAGE_GREEN
    from_green = np.where(current != req_phase, np.maximum(entry_min_green_s - elapsed, 0.0) + change(current),
                          2.0 * (clearance + crossing) + entry_min_green_s)
    clearing = np.select([now == STAGE_CROSSING, now == STAGE_YELLOW],
                         [np.maximum(crossing - elapsed, 0.0) + clearance,
                          np.maximum(yellow_s[req_signal] - elapsed, 0.0) + all_red_s[req_signal]],
                         np.maximum(all_red_s[req_signal] - elapsed, 0.0))
    then = np.where(coming != req_phase, entry_min_green_s + change(coming), 0.0)
    wait = np.where(in_green, from_green, clearing + then)

    queue = np.zeros(len(req_signal))
    for r in range(len(req_signal)):
        lanes = req_lane[req_lane_ptr[r]:req_lane_ptr[r + 1]]
        if lanes.size:
            queue[r] = halting[lanes].max()
    out[:] = wait + np.where(queue > 0, queue_start_s + queue_headway_s * queue, 0.0)


def note_discharge(halting, previous_halting, time_s, last_discharge_s):
    moved = (halting < previous_halting) | (halting == 0)
    last_discharge_s[moved] = time_s
    previous_halting[:] = halting


def estimate_loop_queues(passed_veh, occupied, elapsed_s, lane, stop_ptr, stop_loop, stop_share, advance_ptr,
                         advance_loop, advance_share,
                         capacity_veh, crossing_s, standing_occupancy, empty_after_extra_s,
                         green_share, discharge_veh_per_s,
                         queue_veh, in_transit_veh, quiet_s, vehicles, halting, occupancy):
    with np.errstate(divide="ignore"):
        decay = np.where(crossing_s > 0, np.exp(-elapsed_s / np.where(crossing_s > 0, crossing_s, 1.0)), 0.0)
    arrived = _segment_sum(advance_share * passed_veh[advance_loop], advance_ptr)
    spilled = _segment_sum((occupied[advance_loop] >= standing_occupancy).astype(float), advance_ptr) > 0
    modelled = np.diff(stop_ptr) == 0
    standing = queue_veh - in_transit_veh * decay
    modelled_departures = np.where(standing > 0, np.minimum(standing, discharge_veh_per_s * green_share[lane]
                                                             * elapsed_s), 0.0)
    departed = np.where(modelled, modelled_departures, _segment_sum(stop_share * passed_veh[stop_loop], stop_ptr))
    at_line = _segment_max(occupied[stop_loop], stop_ptr)
    count = queue_veh + arrived - departed
    count = np.where(spilled, np.maximum(count, capacity_veh), count)
    count = np.where(at_line > 0, np.maximum(count, 1.0), count)
    count = np.clip(count, 0.0, capacity_veh)
    quiet = (arrived == 0) & (departed == 0) & (at_line == 0) & ~modelled
    quiet_s[:] = np.where(quiet, quiet_s + elapsed_s, 0.0)
    count = np.where(quiet_s >= crossing_s + empty_after_extra_s, 0.0, count)
    queue_veh[:] = count
    in_transit_veh[:] = in_transit_veh * decay + arrived
    vehicles[lane] = count
    halting[lane] = np.maximum(count - in_transit_veh, 0.0)
    occupancy[lane] = at_line
