"""Hot-path kernels: detection zones, phase pressure, phase choice, signal timing.

Every kernel writes into an `out` array the caller owns; `citybrain.reference`
holds a plain-numpy version of each, and the tests hold the two to each other.
"""
from __future__ import annotations

import numpy as np

from .jit import jit

__all__ = [
    "zone_demand",
    "phase_pressure",
    "choose_phases",
    "decide_pressure",
    "schedule_phases",
    "lane_schedule_inputs",
    "plan_requests",
    "actuated_requests",
    "plan_position",
    "cyclic_starts",
    "advance_signals",
    "count_conflicting_greens",
    "merge_lane_values",
    "merge_lanes_in_order",
    "stale_signals",
    "preemption_lead_s",
    "note_discharge",
    "estimate_loop_queues",
    "state_codes",
    "STAGE_GREEN",
    "STAGE_YELLOW",
    "STAGE_ALL_RED",
    "STAGE_CROSSING",
    "STAGE_INTERIM",
]

# A signal's stage: green, then on a change crossing clearance (only where the change ends
# a crossing's green and the net's program has one), yellow, all-red, green again; or,
# where the program has its own phases between the two greens, that interim instead.
STAGE_GREEN, STAGE_YELLOW, STAGE_ALL_RED, STAGE_CROSSING, STAGE_INTERIM = 0, 1, 2, 3, 4
KEEP = -1
# Pressures are sums of (weighted) vehicle counts: differences below this are rounding.
SCORE_TOLERANCE = 1e-9


@jit
def zone_demand(lane_values, zone_ptr, zone_lane, zone_weight, out):
    """out[l] = sum over the detection zone of lane l of weight * lane_values: e.g.
    the halted vehicles a controller sees on the lane."""
    for lane in range(out.shape[0]):
        total = 0.0
        for k in range(zone_ptr[lane], zone_ptr[lane + 1]):
            total += zone_weight[k] * lane_values[zone_lane[k]]
        out[lane] = total


@jit
def phase_pressure(upstream, downstream, term_ptr, term_in, term_out, term_weight, out):
    """Max-pressure weight of every phase: sum of w * (upstream[in] - downstream[out])."""
    for phase in range(out.shape[0]):
        total = 0.0
        for k in range(term_ptr[phase], term_ptr[phase + 1]):
            total += term_weight[k] * (upstream[term_in[k]] - downstream[term_out[k]])
        out[phase] = total


@jit
def note_discharge(halting, previous_halting, time_s, last_discharge_s):
    """last_discharge_s[l] = time_s where lane l's queue shrank or is empty; then
    previous_halting takes this frame's counts."""
    for lane in range(halting.shape[0]):
        if halting[lane] < previous_halting[lane] or halting[lane] == 0.0:
            last_discharge_s[lane] = time_s
        previous_halting[lane] = halting[lane]


@jit
def estimate_loop_queues(passed_veh, occupied, elapsed_s, lane, stop_ptr, stop_loop, stop_share, advance_ptr,
                         advance_loop, advance_share,
                         capacity_veh, crossing_s, standing_occupancy, empty_after_extra_s,
                         green_share, discharge_veh_per_s,
                         queue_veh, in_transit_veh, quiet_s, vehicles, halting, occupancy):
    """Input-output counting between each detected lane's advance and stop-line
    loops (see citybrain.detectors). Updates the carried state (queue_veh,
    in_transit_veh, quiet_s) and writes the lane's vehicles, halted vehicles and
    stop-line occupancy into the frame arrays at lane[i].

    A lane with no stop-line loop (only loops upstream) counts departures as the
    signal shows them: while it is green (green_share[lane]: the share of the
    period its signal showed it green) its standing vehicles leave at
    discharge_veh_per_s. Its queue is never assumed gone for quiet."""
    for i in range(lane.shape[0]):
        decay = np.exp(-elapsed_s / crossing_s[i]) if crossing_s[i] > 0.0 else 0.0
        arrived = 0.0
        spilled = False
        for k in range(advance_ptr[i], advance_ptr[i + 1]):
            loop = advance_loop[k]
            arrived += advance_share[k] * passed_veh[loop]
            if occupied[loop] >= standing_occupancy:
                spilled = True
        departed = 0.0
        at_line = 0.0
        for k in range(stop_ptr[i], stop_ptr[i + 1]):
            loop = stop_loop[k]
            departed += stop_share[k] * passed_veh[loop]
            if occupied[loop] > at_line:
                at_line = occupied[loop]
        modelled = stop_ptr[i] == stop_ptr[i + 1]
        if modelled:
            standing = queue_veh[i] - in_transit_veh[i] * decay      # reached the line before this period
            can_leave = discharge_veh_per_s * green_share[lane[i]] * elapsed_s
            departed = min(standing, can_leave) if standing > 0.0 else 0.0
        count = queue_veh[i] + arrived - departed
        if spilled and count < capacity_veh[i]:
            count = capacity_veh[i]           # the queue reaches back over the advance loop
        if at_line > 0.0 and count < 1.0:
            count = 1.0                       # something is on the stop-line loop
        if count > capacity_veh[i]:
            count = capacity_veh[i]
        if count < 0.0:
            count = 0.0
        if arrived == 0.0 and departed == 0.0 and at_line == 0.0 and not modelled:
            quiet_s[i] += elapsed_s
        else:
            quiet_s[i] = 0.0
        if quiet_s[i] >= crossing_s[i] + empty_after_extra_s:
            count = 0.0                       # nothing came in for a whole crossing: the lane is empty
        queue_veh[i] = count
        # Vehicles that passed the advance loop less than a crossing ago may still be moving.
        in_transit_veh[i] = in_transit_veh[i] * decay + arrived
        # A vehicle that came in more than a crossing ago and has not left is queued.
        standing = count - in_transit_veh[i]
        out = lane[i]
        vehicles[out] = count
        halting[out] = standing if standing > 0.0 else 0.0
        occupancy[out] = at_line


@jit
def choose_phases(score, phase_ptr, green_phase, stage, stage_time_s, min_green_s, max_green_s, requested):
    """Per signal: the phase to request (local index), or KEEP.

    A signal in green past its minimum moves to its best-scoring phase when that
    beats the current one; past max_green_s it moves to the best other phase.
    Ties keep the lower index (and the current phase), so results are
    deterministic; scores within SCORE_TOLERANCE count as tied, so a decision
    never hangs on the order in which floating-point terms were summed.
    """
    for signal in range(requested.shape[0]):
        requested[signal] = KEEP
        if stage[signal] != STAGE_GREEN or stage_time_s[signal] < min_green_s[signal]:
            continue
        first = phase_ptr[signal]
        count = phase_ptr[signal + 1] - first
        if count < 2:
            continue
        current = green_phase[signal]
        best = -1
        best_other = -1
        for p in range(count):
            if best < 0 or score[first + p] > score[first + best] + SCORE_TOLERANCE:
                best = p
            if p != current and (best_other < 0 or score[first + p] > score[first + best_other] + SCORE_TOLERANCE):
                best_other = p
        if stage_time_s[signal] >= max_green_s[signal]:
            requested[signal] = best_other
        elif best != current and score[first + best] > score[first + current] + SCORE_TOLERANCE:
            requested[signal] = best


@jit
def decide_pressure(halting, zone_ptr, zone_lane, zone_weight, term_ptr, term_in, term_out, term_weight, phase_ptr,
                    green_phase, stage, stage_time_s, min_green_s, max_green_s, demand, score, requested):
    """Max-pressure's whole decision in one call: halted vehicles per detection
    zone, the pressure of every phase, the phase choice."""
    zone_demand(halting, zone_ptr, zone_lane, zone_weight, demand)
    # The same demand measure upstream and downstream of every movement.
    phase_pressure(demand, demand, term_ptr, term_in, term_out, term_weight, score)
    choose_phases(score, phase_ptr, green_phase, stage, stage_time_s, min_green_s, max_green_s, requested)


@jit
def lane_schedule_inputs(halting, vehicles, time_s, zone_ptr, zone_lane, zone_weight, arrival_window_s,
                         rate_memory_s, saturation_veh_per_s, lane_out_ptr, lane_out, exit_storage_veh,
                         downstream_weight, blocked_after_s, previous_halting, last_discharge_s, queued,
                         approaching, arrival_rate, mean_arrival_rate, service_rate, downstream_wait_s, blocked):
    """Per lane, what `schedule_phases` simulates (every array indexed by lane):

    - queued: halted vehicles in the lane's detection zone;
    - arrival_rate: the moving vehicles of the zone over the time they need to
      reach the stop line (arrival_window_s); mean_arrival_rate follows it with
      memory rate_memory_s (by Little's law both estimate the lane's flow) and
      stands for arrivals past the zone's reach (`arrival_profile` places the
      moving vehicles themselves in time);
    - service_rate: saturation flow, or 0 where every exit lane is full;
    - downstream_wait_s: the wait a vehicle discharged now meets behind the queues
      of its exit lanes, weighted by downstream_weight;
    - blocked: the queue has not moved for blocked_after_s (a head vehicle that
      cannot go, e.g. a permissive turner)."""
    # zone_demand of halted vehicles (queued) and of all vehicles (approaching), in one pass.
    for lane in range(halting.shape[0]):
        halted = 0.0
        present = 0.0
        for k in range(zone_ptr[lane], zone_ptr[lane + 1]):
            member = zone_lane[k]
            halted += zone_weight[k] * halting[member]
            present += zone_weight[k] * vehicles[member]
        queued[lane] = halted
        approaching[lane] = present
    note_discharge(halting, previous_halting, time_s, last_discharge_s)
    for lane in range(halting.shape[0]):
        moving = approaching[lane] - queued[lane]
        moving = moving if moving > 0.0 else 0.0
        rate = moving / arrival_window_s[lane]
        arrival_rate[lane] = rate
        mean_arrival_rate[lane] += (rate - mean_arrival_rate[lane]) / rate_memory_s
        blocked[lane] = time_s - last_discharge_s[lane] >= blocked_after_s
        count = lane_out_ptr[lane + 1] - lane_out_ptr[lane]
        service_rate[lane] = saturation_veh_per_s
        downstream_wait_s[lane] = 0.0
        if count == 0:
            continue
        full = True
        wait = 0.0
        for k in range(lane_out_ptr[lane], lane_out_ptr[lane + 1]):
            out = lane_out[k]
            if halting[out] < exit_storage_veh[out]:
                full = False
            wait += queued[out]
        if full:
            service_rate[lane] = 0.0
        downstream_wait_s[lane] = downstream_weight * wait / count / saturation_veh_per_s


@jit
def arrival_profile(vehicles, halting, zone_ptr, zone_lane, zone_weight, zone_start_s, zone_end_s,
                    arrival_window_s, mean_arrival_rate, profile):
    """profile[lane, t]: the vehicles expected at the lane's stop line in second t
    from now. The moving vehicles on each member of its detection zone arrive
    evenly between the times that member's near and far ends are from the stop
    line at free flow (zone_start_s, zone_end_s); from the zone's whole reach
    (arrival_window_s) on, the lane's mean arrival rate."""
    seconds = profile.shape[1]
    for lane in range(profile.shape[0]):
        for t in range(seconds):
            profile[lane, t] = mean_arrival_rate[lane] if t >= arrival_window_s[lane] else 0.0
        for k in range(zone_ptr[lane], zone_ptr[lane + 1]):
            member = zone_lane[k]
            moving = vehicles[member] - halting[member]
            if moving <= 0.0:
                continue
            start, end = zone_start_s[k], zone_end_s[k]
            if end - start < 1e-9:   # a member of no length: all at once
                if start < seconds:
                    profile[lane, int(start)] += zone_weight[k] * moving
                continue
            per_s = zone_weight[k] * moving / (end - start)
            t = int(start)
            while t < seconds and t < end:
                lo = start if start > t else float(t)
                hi = end if end < t + 1.0 else t + 1.0
                profile[lane, t] += per_s * (hi - lo)
                t += 1


# A phase's queues count as served when what is left is below this (fluid model rounding).
EMPTY_QUEUE_VEH = 0.01


@jit
def _arrive(queue, lanes, first, count, time_s, arrival_profile, mean_arrival_rate):
    """Second time_s's arrivals join the queues: the lane's arrival profile, then its mean rate."""
    second = int(time_s)
    for i in range(count):
        lane = lanes[first + i]
        queue[i] += arrival_profile[lane, second] if second < arrival_profile.shape[1] else mean_arrival_rate[lane]


@jit
def _wait_one_second(queue, lanes, first, count, time_s, arrival_profile, mean_arrival_rate):
    """A second in which nobody is served: arrivals join the queues; returns the vehicle-seconds waited."""
    _arrive(queue, lanes, first, count, time_s, arrival_profile, mean_arrival_rate)
    waited = 0.0
    for i in range(count):
        waited += queue[i]
    return waited


@jit
def _schedule_cost(start, current, signal, bound, queued, arrival_profile, mean_arrival_rate,
                   service_rate, downstream_wait_s, blocked, signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr,
                   phase_lane, phase_lane_share, phase_lane_holds, transition_offset, needs_clearance, lost_s,
                   stage_time_s, min_green_s, max_green_s, horizon_s, queue, second):
    """Vehicle-seconds of waiting over horizon_s at one signal if it serves `start`
    now (switching unless start == current), then `second` (if >= 0), then each
    time its queues are empty (or max green is reached) the phase with the most
    vehicles left to serve. A phase's queues are those of its lanes with
    phase_lane_holds: a lane it serves only in part (a shared lane with one of its
    turns at red) does not keep it green. Stops early once the cost exceeds `bound`. Returns the
    cost and, when `second` < 0, the phase the greedy rule started right after
    `start` (-1 if it idled first or never got there)."""
    first = signal_lane_ptr[signal]
    count = signal_lane_ptr[signal + 1] - first
    n_phases = phase_ptr[signal + 1] - phase_ptr[signal]
    for i in range(count):
        queue[i] = queued[signal_lane[first + i]]
    t = 0.0
    cost = 0.0
    phase = start
    previous = current
    continuing = start == current
    greedy_second = -1
    served_phases = 0
    idled = False
    while t < horizon_s and cost <= bound:
        if phase < 0 and second >= 0:
            phase = second
            second = -1
        if phase < 0:   # between phases: the phase with the most vehicles it can serve
            most = 0.0
            for p in range(n_phases):
                if p == previous:
                    continue
                g = phase_ptr[signal] + p
                waiting = 0.0
                for k in range(phase_lane_ptr[g], phase_lane_ptr[g + 1]):
                    i = phase_lane[k]
                    if service_rate[signal_lane[first + i]] > 0.0:
                        waiting += queue[i]
                if waiting > most:
                    most = waiting
                    phase = p
            if phase < 0 or most < EMPTY_QUEUE_VEH:   # nothing to serve: a second passes idle
                phase = -1
                idled = True
                cost += _wait_one_second(queue, signal_lane, first, count, t, arrival_profile, mean_arrival_rate)
                t += 1.0
                continue
            if served_phases == 1 and not idled:
                greedy_second = phase
        if continuing:
            green_s = stage_time_s[signal]
            least_s = 0.0
        else:
            lost = lost_s[signal] if needs_clearance[transition_offset[signal] + previous * n_phases + phase] else 0.0
            spent = 0.0
            while spent < lost and t < horizon_s:
                cost += _wait_one_second(queue, signal_lane, first, count, t, arrival_profile, mean_arrival_rate)
                spent += 1.0
                t += 1.0
            green_s = 0.0
            least_s = min_green_s[signal]
        g = phase_ptr[signal] + phase
        while t < horizon_s and cost <= bound:
            _arrive(queue, signal_lane, first, count, t, arrival_profile, mean_arrival_rate)
            for k in range(phase_lane_ptr[g], phase_lane_ptr[g + 1]):
                i = phase_lane[k]
                lane = signal_lane[first + i]
                rate = 0.0 if continuing and blocked[lane] else service_rate[lane] * phase_lane_share[k]
                served = rate if queue[i] > rate else queue[i]
                queue[i] -= served
                cost += served * downstream_wait_s[lane]
            for i in range(count):
                cost += queue[i]
            t += 1.0
            green_s += 1.0
            if green_s >= max_green_s[signal]:
                break
            if green_s >= least_s:
                served_all = True
                for k in range(phase_lane_ptr[g], phase_lane_ptr[g + 1]):
                    i = phase_lane[k]
                    lane = signal_lane[first + i]
                    if not phase_lane_holds[k]:
                        continue
                    if queue[i] >= EMPTY_QUEUE_VEH and service_rate[lane] > 0.0 and not (continuing and blocked[lane]):
                        served_all = False
                        break
                if served_all:
                    break
        served_phases += 1
        previous = phase
        phase = -1
        continuing = False
    return cost, greedy_second


@jit
def _best_schedule_cost(start, current, signal, bound, queued, arrival_profile, mean_arrival_rate,
                        service_rate, downstream_wait_s, blocked, signal_lane_ptr, signal_lane, phase_ptr,
                        phase_lane_ptr, phase_lane, phase_lane_share, phase_lane_holds, transition_offset,
                        needs_clearance, lost_s, stage_time_s, min_green_s, max_green_s, horizon_s, queue):
    """The cheapest `_schedule_cost` of starting `start` now over every choice of the
    phase after it (the greedy continuation, or each other phase): the sequence of
    the next two phases is searched, the rest of the horizon greedy. Costs above
    `bound` are cut short. The phase the greedy continuation started is not costed
    again on its own: that schedule is the same one."""
    best = np.inf
    repeated = start   # an explicit second phase the greedy run already costed
    for second in range(-1, phase_ptr[signal + 1] - phase_ptr[signal]):
        if second == start or second == repeated:
            continue
        cost, greedy_second = _schedule_cost(
            start, current, signal, min(bound, best), queued, arrival_profile, mean_arrival_rate,
            service_rate, downstream_wait_s, blocked, signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr,
            phase_lane, phase_lane_share, phase_lane_holds, transition_offset, needs_clearance, lost_s, stage_time_s,
            min_green_s, max_green_s, horizon_s, queue, second)
        if second < 0:
            repeated = greedy_second if greedy_second >= 0 else start
        if cost < best:
            best = cost
    return best


@jit
def _stalled_phase(signal, current, queued, service_rate, time_s, last_discharge_s, max_stall_s, signal_lane_ptr,
                   signal_lane, phase_ptr, phase_lane_ptr, phase_lane, phase_lane_share, start_allowed):
    """The phase other than `current` giving a protected green to the lane whose queue
    has stood longest, at least max_stall_s, with somewhere to go (the first such
    phase on a tie); -1 if none."""
    first = signal_lane_ptr[signal]
    stalled = -1
    longest = -1.0
    for p in range(phase_ptr[signal + 1] - phase_ptr[signal]):
        g = phase_ptr[signal] + p
        if p == current or not start_allowed[g]:
            continue
        for k in range(phase_lane_ptr[g], phase_lane_ptr[g + 1]):
            lane = signal_lane[first + phase_lane[k]]
            stood_s = time_s - last_discharge_s[lane]
            if (phase_lane_share[k] >= 1.0 and queued[lane] >= 1.0 and service_rate[lane] > 0.0
                    and stood_s >= max_stall_s and stood_s > longest):
                stalled = p
                longest = stood_s
    return stalled


@jit
def _conflicting_call(signal, current, queued, service_rate, signal_lane_ptr, signal_lane, phase_ptr,
                      phase_lane_ptr, phase_lane):
    """Whether another phase than `current` could serve a lane that holds a halted
    vehicle and that `current` does not serve: an actuated controller's conflicting
    call, without which its max green does not run."""
    first = signal_lane_ptr[signal]
    now = phase_ptr[signal] + current
    for p in range(phase_ptr[signal + 1] - phase_ptr[signal]):
        if p == current:
            continue
        g = phase_ptr[signal] + p
        for k in range(phase_lane_ptr[g], phase_lane_ptr[g + 1]):
            position = phase_lane[k]
            lane = signal_lane[first + position]
            if queued[lane] < 1.0 or service_rate[lane] <= 0.0:
                continue
            served_now = False
            for j in range(phase_lane_ptr[now], phase_lane_ptr[now + 1]):
                if phase_lane[j] == position:
                    served_now = True
                    break
            if not served_now:
                return True
    return False


@jit
def schedule_phases(queued, arrival_profile, mean_arrival_rate, service_rate, downstream_wait_s,
                    blocked, signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr, phase_lane, phase_lane_share,
                    phase_lane_holds, transition_offset, needs_clearance, lost_s, green_phase, stage, stage_time_s,
                    min_green_s, max_green_s, horizon_s, time_s, last_discharge_s, max_stall_s, start_allowed, queue,
                    requested):
    """Per signal in green past its minimum: the phase to start now that gives the
    least waiting over a rolling horizon (see `_best_schedule_cost`), or KEEP when that
    is the current phase. Past max green the current phase is not a candidate while
    another phase has a halted vehicle to serve on a lane it does not (`_conflicting_call`).
    Before that, a lane whose queue has stood for max_stall_s (since last_discharge_s:
    it last shrank or was empty) gets the phase that protects it (`_stalled_phase`).
    Ties go to the lower phase index, as in choose_phases' ranking. signal_lane
    lists each signal's approach lanes (CSR); phase_lane gives, per phase, the positions in
    its signal's list of the lanes it serves, phase_lane_share the share of
    saturation flow each discharges at in that phase, and phase_lane_holds whether its
    queue keeps that phase green. Arrivals follow arrival_profile
    [lane, second] (`arrival_profile`), then mean_arrival_rate. queue is scratch
    (longest list). Only phases with start_allowed (per phase) may start: all of
    them in free order, the next ones in the program's cycle in cyclic order."""
    for signal in range(requested.shape[0]):
        requested[signal] = KEEP
        n_phases = phase_ptr[signal + 1] - phase_ptr[signal]
        if stage[signal] != STAGE_GREEN or stage_time_s[signal] < min_green_s[signal] or n_phases < 2:
            continue
        current = green_phase[signal]
        stalled = _stalled_phase(signal, current, queued, service_rate, time_s, last_discharge_s, max_stall_s,
                                 signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr, phase_lane,
                                 phase_lane_share, start_allowed)
        if stalled >= 0:
            requested[signal] = stalled
            continue
        forced = stage_time_s[signal] >= max_green_s[signal] and _conflicting_call(
            signal, current, queued, service_rate, signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr, phase_lane)
        # Keeping the current phase usually wins: costing it first bounds the others early.
        # A candidate costing more than it cannot be chosen, so cutting it short changes nothing.
        keep_cost = np.inf
        if not forced:
            keep_cost = _best_schedule_cost(current, current, signal, np.inf, queued, arrival_profile,
                                            mean_arrival_rate, service_rate, downstream_wait_s,
                                            blocked, signal_lane_ptr, signal_lane, phase_ptr, phase_lane_ptr,
                                            phase_lane, phase_lane_share, phase_lane_holds, transition_offset,
                                            needs_clearance, lost_s, stage_time_s, min_green_s, max_green_s,
                                            horizon_s, queue)
        best = -1
        best_cost = np.inf
        for start in range(n_phases):
            if (forced and start == current) or (start != current and not start_allowed[phase_ptr[signal] + start]):
                continue
            if start == current:
                cost = keep_cost
            else:
                bound = min(best_cost, keep_cost + SCORE_TOLERANCE)
                cost = _best_schedule_cost(start, current, signal, bound, queued, arrival_profile, mean_arrival_rate,
                                           service_rate, downstream_wait_s, blocked, signal_lane_ptr, signal_lane,
                                           phase_ptr, phase_lane_ptr, phase_lane, phase_lane_share, phase_lane_holds,
                                           transition_offset, needs_clearance, lost_s, stage_time_s, min_green_s,
                                           max_green_s, horizon_s, queue)
            if cost < best_cost - SCORE_TOLERANCE:
                best, best_cost = start, cost
        if best >= 0 and best != current:
            requested[signal] = best


@jit
def plan_position(plan_ptr, plan_end_s, plan_green_s, cycle_s, offset_s, time_s, signal):
    """Where the program's cycle is at time_s for `signal`: (step, seconds into its
    green) if a green step's window holds time_s, else (the step whose green comes
    next, -(seconds into the interim before it)). The cycle starts at phase 0 of
    the program at offset_s (SUMO's tlLogic offset)."""
    first = plan_ptr[signal]
    count = plan_ptr[signal + 1] - first
    cycle = cycle_s[signal]
    position = (time_s - offset_s[signal]) % cycle
    for k in range(count):
        left = (plan_end_s[first + k] - position) % cycle
        if left > 0.0 and left <= plan_green_s[first + k] + 1e-9:
            return k, plan_green_s[first + k] - left
    best = 0
    best_wait = cycle + 1.0
    for k in range(count):
        wait = (plan_end_s[first + k] - plan_green_s[first + k] - position) % cycle
        if wait < best_wait:
            best, best_wait = k, wait
    previous = (best - 1) % count
    return best, -((position - plan_end_s[first + previous]) % cycle)


@jit
def _step_showing(plan_phase, first, count, step, phase):
    """The plan step showing `phase`: `step` if it does, else the next one that does
    (in cycle order), else `step`."""
    if plan_phase[first + step] == phase:
        return step
    for k in range(1, count + 1):
        candidate = (step + k) % count
        if plan_phase[first + candidate] == phase:
            return candidate
    return step


@jit
def _green_step(plan_ptr, plan_phase, green_phase, stage, plan_step, signal):
    """The step of its plan (of two steps or more) that the signal's green shows,
    tracked in plan_step; -1 outside a green, or with a plan of one step."""
    first = plan_ptr[signal]
    count = plan_ptr[signal + 1] - first
    if stage[signal] != STAGE_GREEN or count < 2:
        return -1
    plan_step[signal] = _step_showing(plan_phase, first, count, plan_step[signal], green_phase[signal])
    return plan_step[signal]


@jit
def plan_requests(plan_ptr, plan_phase, plan_end_s, plan_green_s, cycle_s, offset_s, active, green_phase, stage,
                  time_s, plan_step, requested):
    """For signals with active[i]: the program's own plan. Each green of the plan
    ends when the cycle reaches the end of its window (time_s: the safety layer
    applies the request in this step), then the next step's phase is requested; the
    program's interim between them is the safety layer's (advance_signals). A green
    entered out of its window (after adaptive control) ends once its minimum green
    has passed, unless its window is less than one green away, so the signal is
    back in step with the cycle within one cycle. plan_step[i] tracks the step."""
    for signal in range(requested.shape[0]):
        if not active[signal]:
            continue
        requested[signal] = KEEP
        step = _green_step(plan_ptr, plan_phase, green_phase, stage, plan_step, signal)
        if step < 0:
            continue
        first = plan_ptr[signal]
        count = plan_ptr[signal + 1] - first
        cycle = cycle_s[signal]
        position = (time_s - offset_s[signal]) % cycle
        left = (plan_end_s[first + step] - position) % cycle
        if left < 1e-9 or left > 2.0 * plan_green_s[first + step] + 1e-9:
            requested[signal] = plan_phase[first + (step + 1) % count]


@jit
def actuated_requests(plan_ptr, plan_phase, plan_green_s, plan_min_s, plan_max_s, phase_ptr, active, green_phase,
                      stage, stage_time_s, phase_demand, plan_step, requested):
    """For signals with active[i] whose program is actuated: its plan as SUMO's
    actuated control runs it. Each green of the plan, in cycle order, is held for
    its minimum (minDur; without one, its duration), then ends when nothing
    demands it (phase_demand of its phase below half a vehicle) or at its maximum
    (maxDur), and the next step's phase is requested. plan_step[i] tracks the step."""
    for signal in range(requested.shape[0]):
        if not active[signal]:
            continue
        requested[signal] = KEEP
        step = _green_step(plan_ptr, plan_phase, green_phase, stage, plan_step, signal)
        if step < 0:
            continue
        first = plan_ptr[signal]
        count = plan_ptr[signal + 1] - first
        shortest = plan_min_s[first + step] if plan_min_s[first + step] >= 0.0 else plan_green_s[first + step]
        longest = plan_max_s[first + step] if plan_max_s[first + step] >= 0.0 else plan_green_s[first + step]
        elapsed = stage_time_s[signal]
        if elapsed < shortest - 1e-9:
            continue
        if elapsed >= longest - 1e-9 or phase_demand[phase_ptr[signal] + green_phase[signal]] < 0.5:
            following = plan_phase[first + (step + 1) % count]
            if following == green_phase[signal]:      # the program shows this green again: go on past it
                following = plan_phase[first + (step + 2) % count]
            requested[signal] = following


@jit
def cyclic_starts(plan_ptr, plan_phase, plan_min_s, plan_max_s, cyclic, phase_ptr, green_phase, stage,
                  default_max_green_s, called, plan_step, start_allowed, least_green_s, max_green_s):
    """Which phases may start next (start_allowed, per phase) and the bounds on the
    current green. In free order: every phase, and default_max_green_s. At signals
    with cyclic[i], the program's order: the current phase, and the following steps
    of its plan up to the first whose phase has a call (called, per phase: a vehicle
    on a lane it serves), skipping those nobody calls, as a field controller does;
    the next step alone where no later one is called. The green is held at least
    the program's own minimum for its step and at most its maximum (minDur/maxDur
    sums; default_max_green_s where it gives none). plan_step[i] tracks the step,
    as in plan_requests."""
    for signal in range(green_phase.shape[0]):
        first_phase = phase_ptr[signal]
        least_green_s[signal] = 0.0
        max_green_s[signal] = default_max_green_s
        if not cyclic[signal]:
            for g in range(first_phase, phase_ptr[signal + 1]):
                start_allowed[g] = True
            continue
        first = plan_ptr[signal]
        count = plan_ptr[signal + 1] - first
        if stage[signal] == STAGE_GREEN:
            plan_step[signal] = _step_showing(plan_phase, first, count, plan_step[signal], green_phase[signal])
        step = plan_step[signal]
        for g in range(first_phase, phase_ptr[signal + 1]):
            start_allowed[g] = False
        start_allowed[first_phase + green_phase[signal]] = True
        start_allowed[first_phase + plan_phase[first + (step + 1) % count]] = True
        for ahead in range(1, count):
            phase = plan_phase[first + (step + ahead) % count]
            if called[first_phase + phase]:
                for back in range(1, ahead + 1):
                    start_allowed[first_phase + plan_phase[first + (step + back) % count]] = True
                break
        if plan_min_s[first + step] >= 0.0:
            least_green_s[signal] = plan_min_s[first + step]
        if plan_max_s[first + step] >= 0.0:
            max_green_s[signal] = plan_max_s[first + step]


@jit
def advance_signals(requested, dt_s, phase_ptr, transition_offset, needs_clearance, ends_crossing,
                    crossing_clearance_s, yellow_s, all_red_s, interim_ptr, interim_s, on_plan, min_green_s,
                    green_phase, next_phase, stage, stage_time_s, changed):
    """Advance every signal's stage machine by dt_s (the safety layer's core).

    green -> [crossing clearance] -> yellow -> all-red -> green, or, at signals
    running their program's plan (on_plan), green -> the program's own interim ->
    green where it has one for the change. A request is
    honoured only in green after the minimum green; clearance is served in full (a
    yellow of 2.5 s lasts 3 steps of 1 s, never 2). A change that ends a crossing's
    green first shows the ending crossings red for crossing_clearance_s while the
    vehicle greens go on. A change that takes no link out of green skips clearance.
    changed[i] is set when the displayed state of signal i changes this step.
    """
    for signal in range(stage.shape[0]):
        stage_time_s[signal] += dt_s
        changed[signal] = False
        s = stage[signal]
        n = phase_ptr[signal + 1] - phase_ptr[signal]
        if s == STAGE_GREEN:
            target = requested[signal]
            if target < 0 or target == green_phase[signal] or stage_time_s[signal] < min_green_s[signal]:
                continue
            if target >= n:
                continue
            next_phase[signal] = target
            transition = transition_offset[signal] + green_phase[signal] * n + target
            if on_plan[signal] and interim_ptr[transition + 1] > interim_ptr[transition]:
                stage[signal] = STAGE_INTERIM
            elif ends_crossing[transition] and crossing_clearance_s[signal] > 0.0:
                stage[signal] = STAGE_CROSSING
            elif needs_clearance[transition]:
                stage[signal] = STAGE_YELLOW
            else:
                green_phase[signal] = target
            stage_time_s[signal] = 0.0
            changed[signal] = True
        elif s == STAGE_INTERIM:
            transition = transition_offset[signal] + green_phase[signal] * n + next_phase[signal]
            elapsed = 0.0
            for k in range(interim_ptr[transition], interim_ptr[transition + 1]):
                elapsed += interim_s[k]
                # The display changes where a step of the interim ends (or the interim does).
                if stage_time_s[signal] - dt_s < elapsed - 1e-9 and stage_time_s[signal] >= elapsed - 1e-9:
                    changed[signal] = True
            if stage_time_s[signal] >= elapsed - 1e-9:
                stage[signal] = STAGE_GREEN
                green_phase[signal] = next_phase[signal]
                stage_time_s[signal] = 0.0
        elif s == STAGE_CROSSING:
            if stage_time_s[signal] < crossing_clearance_s[signal]:
                continue
            stage[signal] = STAGE_YELLOW   # a crossing left green: the change needs clearance
            stage_time_s[signal] = 0.0
            changed[signal] = True
        elif s == STAGE_YELLOW:
            if stage_time_s[signal] < yellow_s[signal]:
                continue
            if all_red_s[signal] > 0.0:
                stage[signal] = STAGE_ALL_RED
            else:
                stage[signal] = STAGE_GREEN
                green_phase[signal] = next_phase[signal]
            stage_time_s[signal] = 0.0
            changed[signal] = True
        else:
            if stage_time_s[signal] < all_red_s[signal]:
                continue
            stage[signal] = STAGE_GREEN
            green_phase[signal] = next_phase[signal]
            stage_time_s[signal] = 0.0
            changed[signal] = True


@jit
def state_codes(signals, state_base, n_phases, stage, green_phase, next_phase, out):
    """out[k] = the index in the safety layer's table of state strings of what
    signal signals[k] shows: (signal, stage, phase, next phase)."""
    for k in range(signals.shape[0]):
        signal = signals[k]
        n = n_phases[signal]
        out[k] = state_base[signal] + stage[signal] * n * n + green_phase[signal] * n + next_phase[signal]


@jit
def count_conflicting_greens(protected, link_offset, conflict_offset, conflict, out):
    """out[i] = number of foe link pairs of signal i both showing protected green."""
    for signal in range(out.shape[0]):
        start = link_offset[signal]
        n = link_offset[signal + 1] - start
        base = conflict_offset[signal]
        found = 0
        for a in range(n):
            if not protected[start + a]:
                continue
            for b in range(a + 1, n):
                if protected[start + b] and conflict[base + a * n + b]:
                    found += 1
        out[signal] = found


@jit
def merge_lane_values(lanes, time_s, capacity, values, stores, fixed_bounds, lane_seen_s, valid):
    """Merge one frame into the per-lane stores, lane by lane.

    values[f] is field f's reading per entry, or empty where the frame lacks the
    field (its store is then left as it is). An entry is valid when its lane is
    known (lanes[k] >= 0), every present value lies in 0..bound (NaN fails):
    fixed_bounds[f] when positive, else the lane's capacity, and field 1 (halting)
    is at most field 0 (vehicles) where both are present. A valid entry is
    stored unless a newer frame already set its lane, which is then marked seen
    at time_s. valid[k] reports the check."""
    for k in range(lanes.shape[0]):
        lane = lanes[k]
        ok = lane >= 0
        if ok:
            for f in range(len(values)):
                if values[f].shape[0] == 0:
                    continue
                limit = fixed_bounds[f] if fixed_bounds[f] > 0.0 else capacity[lane]
                value = values[f][k]
                if not (value >= 0.0 and value <= limit):
                    ok = False
            if ok and values[0].shape[0] > 0 and values[1].shape[0] > 0 and values[1][k] > values[0][k]:
                ok = False                    # more vehicles halting than on the lane
        valid[k] = ok
        if ok and lane_seen_s[lane] <= time_s:
            for f in range(len(values)):
                if values[f].shape[0] > 0:
                    stores[f][lane] = values[f][k]
            lane_seen_s[lane] = time_s


@jit
def merge_lanes_in_order(time_s, capacity, vehicles, halting, occupancy, stores, lane_seen_s, valid):
    """merge_lane_values for a frame whose entry k is lane k and has all three fields
    (vehicles: 0..capacity; halting: 0..vehicles; occupancy: 0..1), as a gateway for the whole
    network sends it. Without the lane gather and with selects instead of branches
    the loop vectorises: about 6x faster than merge_lane_values on 200k lanes."""
    vehicle_store, halting_store, occupancy_store = stores
    for lane in range(vehicles.shape[0]):
        limit = capacity[lane]
        v, h, o = vehicles[lane], halting[lane], occupancy[lane]
        ok = (v >= 0.0) & (v <= limit) & (h >= 0.0) & (h <= v) & (o >= 0.0) & (o <= 1.0)
        valid[lane] = ok
        take = ok & (lane_seen_s[lane] <= time_s)
        vehicle_store[lane] = v if take else vehicle_store[lane]
        halting_store[lane] = h if take else halting_store[lane]
        occupancy_store[lane] = o if take else occupancy_store[lane]
        lane_seen_s[lane] = time_s if take else lane_seen_s[lane]


@jit
def stale_signals(lane_seen_s, now_s, stale_after_s, signal_lane_ptr, signal_lane, out):
    """out[i] = some lane signal i reads (signal_lane[ptr[i]:ptr[i+1]]) was last seen
    more than stale_after_s before now_s."""
    for signal in range(out.shape[0]):
        stale = False
        for k in range(signal_lane_ptr[signal], signal_lane_ptr[signal + 1]):
            if now_s - lane_seen_s[signal_lane[k]] > stale_after_s:
                stale = True
                break
        out[signal] = stale


@jit
def preemption_lead_s(req_signal, req_phase, req_lane_ptr, req_lane, halting, phase_ptr, transition_offset,
                      needs_clearance, ends_crossing, crossing_clearance_s, yellow_s, all_red_s, green_phase,
                      next_phase, stage, stage_time_s, entry_min_green_s, queue_start_s, queue_headway_s, out):
    """How long before an emergency vehicle arrives its request r (phase req_phase[r]
    at signal req_signal[r]) must begin: the time until that phase can show green
    from the signal's present stage (minimum green cut to entry_min_green_s, then
    crossing clearance, yellow and all-red in full; a clearance under way towards
    another phase is finished first), plus the discharge of the longest standing queue on the
    request's approach lanes req_lane[req_lane_ptr[r]:req_lane_ptr[r + 1]].
    Where the phase is green already, the time it would take to come back had
    the signal just left it: holding it from then on is what keeps it."""
    for r in range(out.shape[0]):
        signal = req_signal[r]
        target = req_phase[r]
        n = phase_ptr[signal + 1] - phase_ptr[signal]
        base = transition_offset[signal]
        clearance = yellow_s[signal] + all_red_s[signal]
        crossing = crossing_clearance_s[signal]
        elapsed = stage_time_s[signal]
        wait = 0.0
        if stage[signal] == STAGE_GREEN:
            current = green_phase[signal]
            if current == target:
                wait = 2.0 * (clearance + crossing) + entry_min_green_s
            else:
                wait = max(entry_min_green_s - elapsed, 0.0)
                if ends_crossing[base + current * n + target]:
                    wait += crossing
                if needs_clearance[base + current * n + target]:
                    wait += clearance
        else:
            if stage[signal] == STAGE_CROSSING:
                wait = max(crossing - elapsed, 0.0) + clearance
            elif stage[signal] == STAGE_YELLOW:
                wait = max(yellow_s[signal] - elapsed, 0.0) + all_red_s[signal]
            else:
                wait = max(all_red_s[signal] - elapsed, 0.0)
            coming = next_phase[signal]
            if coming != target:
                wait += entry_min_green_s
                if ends_crossing[base + coming * n + target]:
                    wait += crossing
                if needs_clearance[base + coming * n + target]:
                    wait += clearance
        queue = 0.0
        for k in range(req_lane_ptr[r], req_lane_ptr[r + 1]):
            queue = max(queue, halting[req_lane[k]])
        if queue > 0.0:
            wait += queue_start_s + queue_headway_s * queue
        out[r] = wait
