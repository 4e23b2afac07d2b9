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
    "fixed_time_requests",
    "advance_signals",
    "count_conflicting_greens",
    "merge_lane_values",
    "merge_lanes_in_order",
    "stale_signals",
    "preemption_lead_s",
    "note_discharge",
    "discount_blocked_lanes",
    "estimate_loop_queues",
    "state_codes",
    "STAGE_GREEN",
    "STAGE_YELLOW",
    "STAGE_ALL_RED",
]

STAGE_GREEN, STAGE_YELLOW, STAGE_ALL_RED = 0, 1, 2
KEEP = -1
# Pressures are sums of (weighted) vehicle counts: differences below this are rounding.
SCORE_TOLERANCE = 1e-9


@jit
def zone_demand(halting, vehicles, moving_weight, zone_ptr, zone_lane, zone_weight, lane_demand, out):
    """out[l] = sum over the detection zone of lane l of weight * (halted vehicles
    + moving_weight * moving vehicles): the demand a controller sees on the lane.
    lane_demand is scratch: each lane's own term, computed once (lanes sit in
    several zones)."""
    for lane in range(halting.shape[0]):
        queued = halting[lane]
        lane_demand[lane] = queued + moving_weight * (vehicles[lane] - queued)
    for lane in range(out.shape[0]):
        total = 0.0
        for k in range(zone_ptr[lane], zone_ptr[lane + 1]):
            total += zone_weight[k] * lane_demand[zone_lane[k]]
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
                         queue_veh, in_transit_veh, quiet_s, vehicles, halting, occupancy):
    """Input-output counting between each detected lane's advance and stop-line
    loops (see citybrain.detectors). Updates the carried state (queue_veh,
    in_transit_veh, quiet_s) and writes the lane's vehicles, halted vehicles and
    stop-line occupancy into the frame arrays at lane[i]."""
    for i in range(lane.shape[0]):
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
        count = queue_veh[i] + arrived - departed
        if spilled and count < capacity_veh[i]:
            count = capacity_veh[i]           # the queue reaches back over the advance loop
        if at_line > 0.0 and count < 1.0:
            count = 1.0                       # something is on the stop-line loop
        if count > capacity_veh[i]:
            count = capacity_veh[i]
        if count < 0.0:
            count = 0.0
        if arrived == 0.0 and departed == 0.0 and at_line == 0.0:
            quiet_s[i] += elapsed_s
        else:
            quiet_s[i] = 0.0
        if quiet_s[i] >= crossing_s[i] + empty_after_extra_s:
            count = 0.0                       # nothing came in for a whole crossing: the lane is empty
        queue_veh[i] = count
        # Vehicles that passed the advance loop less than a crossing ago may still be moving.
        decay = np.exp(-elapsed_s / crossing_s[i]) if crossing_s[i] > 0.0 else 0.0
        in_transit_veh[i] = in_transit_veh[i] * decay + arrived
        standing = count - in_transit_veh[i] if at_line >= standing_occupancy else 0.0
        out = lane[i]
        vehicles[out] = count
        halting[out] = standing if standing > 0.0 else 0.0
        occupancy[out] = at_line


@jit
def discount_blocked_lanes(score, demand, phase_ptr, term_ptr, term_in, term_out, term_weight, green_phase, stage,
                           stage_time_s, last_discharge_s, time_s, blocked_after_s):
    """Take out of each signal's current phase the pressure of its approach lanes
    whose queue has not moved for blocked_after_s although that phase has been
    green at least as long: their head vehicle is blocked (yielding to oncoming
    traffic, or a full exit), so holding the phase serves nobody on them. Their
    pressure still counts in the signal's other phases (e.g. a protected turn)."""
    for signal in range(green_phase.shape[0]):
        if stage[signal] != STAGE_GREEN or stage_time_s[signal] < blocked_after_s:
            continue
        phase = phase_ptr[signal] + green_phase[signal]
        for k in range(term_ptr[phase], term_ptr[phase + 1]):
            lane = term_in[k]
            if time_s - last_discharge_s[lane] >= blocked_after_s:
                score[phase] -= term_weight[k] * (demand[lane] - demand[term_out[k]])


@jit
def choose_phases(score, phase_ptr, green_phase, stage, stage_time_s, min_green_s, max_green_s,
                  switch_margin, requested):
    """Per signal: the phase to request (local index), or KEEP.

    A signal in green past its minimum moves to its best-scoring phase when that
    beats the current one by more than switch_margin; past max_green_s it moves to
    the best other phase. Ties keep the lower index (and the current phase), so
    results are deterministic; scores within SCORE_TOLERANCE count as tied, so a
    decision never hangs on the order in which floating-point terms were summed.
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
        elif best != current and score[first + best] > score[first + current] + switch_margin[signal] + SCORE_TOLERANCE:
            requested[signal] = best


@jit
def decide_pressure(halting, vehicles, time_s, moving_weight, zone_ptr, zone_lane, zone_weight, term_ptr, term_in,
                    term_out, term_weight, phase_ptr, green_phase, stage, stage_time_s, min_green_s, max_green_s,
                    switch_margin, blocked_after_s, previous_halting, last_discharge_s, lane_demand, demand, score,
                    requested):
    """A pressure controller's whole decision in one call: zone demand, phase
    pressure, blocked lanes (when blocked_after_s > 0), phase choice."""
    zone_demand(halting, vehicles, moving_weight, zone_ptr, zone_lane, zone_weight, lane_demand, demand)
    # The same demand measure upstream and downstream of every movement.
    phase_pressure(demand, demand, term_ptr, term_in, term_out, term_weight, score)
    if blocked_after_s > 0.0:
        note_discharge(halting, previous_halting, time_s, last_discharge_s)
        discount_blocked_lanes(score, demand, phase_ptr, term_ptr, term_in, term_out, term_weight, green_phase,
                               stage, stage_time_s, last_discharge_s, time_s, blocked_after_s)
    choose_phases(score, phase_ptr, green_phase, stage, stage_time_s, min_green_s, max_green_s, switch_margin,
                  requested)


@jit
def fixed_time_requests(phase_ptr, phase_green_s, active, green_phase, stage, stage_time_s, dt_s, requested):
    """For signals with active[i]: the net's fixed-time plan, cycling through the
    candidate phases in program order, each for its program duration (the
    request takes effect in the coming step, hence + dt_s)."""
    for signal in range(requested.shape[0]):
        if not active[signal]:
            continue
        requested[signal] = KEEP
        if stage[signal] != STAGE_GREEN:
            continue
        first = phase_ptr[signal]
        count = phase_ptr[signal + 1] - first
        current = green_phase[signal]
        if count > 1 and stage_time_s[signal] + dt_s >= phase_green_s[first + current]:
            requested[signal] = (current + 1) % count


@jit
def advance_signals(requested, dt_s, phase_ptr, transition_offset, needs_clearance, yellow_s, all_red_s,
                    min_green_s, green_phase, next_phase, stage, stage_time_s, changed):
    """Advance every signal's stage machine by dt_s (the safety layer's core).

    green -> yellow -> all-red -> green. A request is honoured only in green after
    the minimum green; clearance is served in full (a yellow of 2.5 s lasts 3 steps
    of 1 s, never 2). A change that takes no link out of green skips clearance.
    changed[i] is set when the displayed state of signal i changes this step.
    """
    for signal in range(stage.shape[0]):
        stage_time_s[signal] += dt_s
        changed[signal] = False
        s = stage[signal]
        if s == STAGE_GREEN:
            target = requested[signal]
            if target < 0 or target == green_phase[signal] or stage_time_s[signal] < min_green_s[signal]:
                continue
            n = phase_ptr[signal + 1] - phase_ptr[signal]
            if target >= n:
                continue
            next_phase[signal] = target
            if needs_clearance[transition_offset[signal] + green_phase[signal] * n + target]:
                stage[signal] = STAGE_YELLOW
            else:
                green_phase[signal] = target
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
    known (lanes[k] >= 0) and every present value lies in 0..bound (NaN fails):
    fixed_bounds[f] when positive, else the lane's capacity. A valid entry is
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
        valid[k] = ok
        if ok and lane_seen_s[lane] <= time_s:
            for f in range(len(values)):
                if values[f].shape[0] > 0:
                    stores[f][lane] = values[f][k]
            lane_seen_s[lane] = time_s


@jit
def merge_lanes_in_order(time_s, capacity, vehicles, halting, occupancy, stores, lane_seen_s, valid):
    """merge_lane_values for a frame whose entry k is lane k and has all three fields
    (vehicles, halting: 0..capacity; occupancy: 0..1), as a gateway for the whole
    network sends it. Without the lane gather and with selects instead of branches
    the loop vectorises: about 6x faster than merge_lane_values on 200k lanes."""
    vehicle_store, halting_store, occupancy_store = stores
    for lane in range(vehicles.shape[0]):
        limit = capacity[lane]
        v, h, o = vehicles[lane], halting[lane], occupancy[lane]
        ok = (v >= 0.0) & (v <= limit) & (h >= 0.0) & (h <= limit) & (o >= 0.0) & (o <= 1.0)
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
                      needs_clearance, yellow_s, all_red_s, green_phase, next_phase, stage, stage_time_s,
                      entry_min_green_s, queue_start_s, queue_headway_s, out):
    """How long before an emergency vehicle arrives its request r (phase req_phase[r]
    at signal req_signal[r]) must begin: the time until that phase can show green
    from the signal's present stage (minimum green cut to entry_min_green_s, then
    yellow and all-red in full; a clearance under way towards another phase is
    finished first), plus the discharge of the longest standing queue on the
    request's approach lanes req_lane[req_lane_ptr[r]:req_lane_ptr[r + 1]].
    Where the phase is green already, the time it would take to come back had
    the signal just left it: holding it from then on is what keeps it."""
    for r in range(out.shape[0]):
        signal = req_signal[r]
        target = req_phase[r]
        n = phase_ptr[signal + 1] - phase_ptr[signal]
        base = transition_offset[signal]
        clearance = yellow_s[signal] + all_red_s[signal]
        elapsed = stage_time_s[signal]
        wait = 0.0
        if stage[signal] == STAGE_GREEN:
            current = green_phase[signal]
            if current == target:
                wait = 2.0 * clearance + entry_min_green_s
            else:
                wait = max(entry_min_green_s - elapsed, 0.0)
                if needs_clearance[base + current * n + target]:
                    wait += clearance
        else:
            if stage[signal] == STAGE_YELLOW:
                wait = max(yellow_s[signal] - elapsed, 0.0) + all_red_s[signal]
            else:
                wait = max(all_red_s[signal] - elapsed, 0.0)
            coming = next_phase[signal]
            if coming != target:
                wait += entry_min_green_s
                if needs_clearance[base + coming * n + target]:
                    wait += clearance
        queue = 0.0
        for k in range(req_lane_ptr[r], req_lane_ptr[r + 1]):
            queue = max(queue, halting[req_lane[k]])
        if queue > 0.0:
            wait += queue_start_s + queue_headway_s * queue
        out[r] = wait
