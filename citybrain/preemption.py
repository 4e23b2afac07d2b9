"""Emergency-vehicle preemption: a green wave ahead of every reported vehicle.

Each signal on a vehicle's route runs NTCIP 1202's preempt sequence:

- *entry*: once the vehicle's estimated arrival comes within the signal's lead
  time, the signal is asked for the phase the vehicle needs: the one giving its
  turn the most green, or, while vehicles queue on its approach lanes, one that
  greens every turn leaving those lanes (on a lane shared with other turns, a
  protected-turn phase would leave the vehicles ahead at red). A conflicting green
  may end after `SignalTiming.preemption_min_green_s` instead of its minimum
  green; yellow and all-red are served in full (the safety layer sees to it).
- *dwell*: that phase is held while the queue ahead of the vehicle discharges
  and the vehicle approaches and passes.
- *exit*: once the vehicle is past the stop line, or after `max_presence_s`,
  the signal goes back to adaptive control, which serves whoever waited.

Lead time = time until the phase can be green from the signal's present stage
+ discharge of the standing queue on the vehicle's approach + a margin, so the
green is up before the vehicle has to brake. Arrival is estimated every step
from the vehicle's position along its route at free-flow speed (scaled by how
much faster than the limit the vehicle has been seen to drive).

Several vehicles at one signal: requests are ranked by priority class, then
arrival (a vehicle whose green is already showing keeps it against others of
its class); requests whose movement is green in the winner's phase are served
together, the others wait. This module does no I/O: vehicles arrive in
`DetectorFrame.emergency`, in network indices.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import ModuleType

import networkx as nx
import numpy as np

from . import kernels as compiled_kernels
from .config import PreemptionConfig, SignalTiming
from .controllers import SignalView
from .frame import DetectorFrame, EmergencyVehicle
from .kernels import KEEP, STAGE_GREEN
from .network import Network

__all__ = ["Preemption", "PreemptionCounts", "PreemptionRequest", "signal_turns", "IDLE", "ENTRY", "DWELL",
           "WAITING"]

# Per-signal preemption state (Preemption.state); WAITING only describes a request.
IDLE, ENTRY, DWELL, WAITING = 0, 1, 2, 3


@dataclass(frozen=True)
class PreemptionRequest:
    """One vehicle's need at one signal ahead of it, as planned this period."""

    vehicle_id: str
    signal: int
    phase: int           # local candidate phase it needs
    arrival_s: float     # estimated time to the stop line, from now
    lead_s: float        # how early the phase must be requested (time to green + queue)
    status: int          # IDLE (not yet), ENTRY / DWELL (being served), WAITING (a conflicting one goes first)


@dataclass(frozen=True)
class _Turn:
    """One way through a signal: from an edge into the next, as a route takes it."""

    signal: int
    phase: int                  # local candidate phase giving this turn the most green
    served_by: frozenset[int]   # local phases in which every link of it is green as in `phase`
    lanes: np.ndarray           # approach lanes (Network lane indices) of its movements
    # The phase to ask for while vehicles queue ahead on those lanes: one that also
    # greens every other link leaving them, so that a vehicle ahead bound elsewhere
    # cannot block the lane (a shared lane under a protected-turn phase). `phase`
    # when that already does, or when no phase does.
    lane_phase: int
    lane_served_by: frozenset[int]


@dataclass
class _Track:
    """What is known of one vehicle, and of its route's signals."""

    vehicle: EmergencyVehicle
    route: tuple[int, ...] = ()
    index: int = 0                          # position of the vehicle's edge in route
    time_to_end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # free flow, route start -> end of edge k
    stops: list[tuple[int, _Turn]] = field(default_factory=list)            # (k, turn) for route[k] -> route[k+1]
    entered_s: dict[tuple[int, int], float] = field(default_factory=dict)   # (from edge, to edge) -> entry time
    released: set[tuple[int, int]] = field(default_factory=set)             # timed out: not requested again
    suspended: dict[tuple[int, int], float] = field(default_factory=dict)   # stalled: not requested until then
    lane_phase: dict[tuple[int, int], bool] = field(default_factory=dict)   # asks for the lane phase (set at entry)
    moved_s: float = -np.inf                # when the vehicle was last seen making progress
    speed_ratio: float = 1.0                # fastest seen speed / limit, at least 1


@dataclass(frozen=True)
class _Candidate:
    """A signal ahead of a vehicle, this period."""

    track: _Track
    key: tuple[int, int]        # (from edge, to edge) of its turn
    turn: _Turn
    arrival_s: float
    phase: int                  # the turn's phase or lane phase, as chosen for it
    served_by: frozenset[int]

    @property
    def vehicle_id(self) -> str:
        return self.track.vehicle.vehicle_id


@dataclass
class PreemptionCounts:
    entries: int = 0            # signals that began preemption for a vehicle
    timeouts: int = 0           # held past max presence and released
    stalls: int = 0             # held green released because the vehicle made no progress under it
    unroutable: int = 0         # sightings with neither a usable route nor destination
    conflicts: int = 0          # (signal, step) pairs where a request waited for a conflicting one

    def as_dict(self) -> dict:
        return {"entries": self.entries, "timeouts": self.timeouts, "stalls": self.stalls,
                "unroutable": self.unroutable, "conflicts": self.conflicts}


class Preemption:
    def __init__(self, network: Network, timing: SignalTiming, config: PreemptionConfig,
                 kernels: ModuleType = compiled_kernels):
        self.network = network
        self.timing = timing
        self.config = config
        self.kernels = kernels
        n = network.n_signals
        self.state = np.zeros(n, dtype=np.int8)
        self.cut_min_green = np.zeros(n, dtype=bool)
        self.serving: dict[int, str] = {}          # signal -> vehicle it is preempted for
        self.requests: list[PreemptionRequest] = []  # this period's plan, every vehicle and signal ahead
        self.tracks: dict[str, _Track] = {}
        self.counts = PreemptionCounts()
        self.turns = signal_turns(network)
        self._edge_queue_s = np.zeros(len(network.edge_ids))
        self.last_discharge_s = np.zeros(network.n_lanes)    # when each lane's queue last shrank or was empty
        self._previous_halting: np.ndarray | None = None

    def plan(self, frame: DetectorFrame, signals: SignalView, requested: np.ndarray) -> np.ndarray:
        """Overwrite `requested` at signals preempted this period; returns the mask of
        signals whose minimum green may be cut (entry towards a vehicle's phase)."""
        self._update_tracks(frame)
        if self._previous_halting is None:
            self._previous_halting = frame.halting.copy()
            self.last_discharge_s[:] = frame.time_s
        self.kernels.note_discharge(frame.halting, self._previous_halting, frame.time_s, self.last_discharge_s)
        # A vehicle whose green is showing keeps it against later requests of the
        # same priority: taking it away so close to its arrival would stop both.
        dwelling = {signal: vehicle for signal, vehicle in self.serving.items() if self.state[signal] == DWELL}
        self.state[:] = IDLE
        self.cut_min_green[:] = False
        self.serving.clear()
        self.requests = []
        candidates = self._candidates(frame) if self.tracks else []
        if not candidates:
            return self.cut_min_green
        lead = self._lead_s(candidates, frame, signals)
        active, approaching, later = self._admit(candidates, lead, frame.time_s, dwelling)
        winners, served = self._rank(active, dwelling)
        for signal, phase in approaching.items():
            if signal not in winners and requested[signal] >= 0 and requested[signal] != phase:
                requested[signal] = KEEP  # hold the present green until the vehicle's entry
        for signal, phase in winners.items():
            requested[signal] = phase
            showing = signals.stage[signal] == STAGE_GREEN and signals.green_phase[signal] == phase
            self.state[signal] = DWELL if showing else ENTRY
            self.cut_min_green[signal] = not showing
        self.requests = [r if r.status != ENTRY else replace(r, status=int(self.state[r.signal]))
                         for r in served] + later
        return self.cut_min_green

    def _admit(self, candidates: list[_Candidate], lead: np.ndarray, now: float, dwelling: dict[int, str]):
        """Which requests are active this period: those within their lead time (or
        entered before, until max presence), and those near a signal another
        vehicle is entering, so that service follows priority and arrival rather
        than who entered first. Near ones left out hold their signal's green."""
        margin_s = self.config.margin_s + self.timing.control_period_s
        # Within this of its lead time, a switch to another phase would add a whole
        # detour (that phase's green, then clearance) to a request's lead.
        detour_s = (self.timing.preemption_min_green_s + self.network.crossing_clearance_s + self.network.yellow_s
                    + self.network.all_red_s)
        due = [c.key in c.track.entered_s or c.arrival_s <= lead_s + margin_s
               for c, lead_s in zip(candidates, lead.tolist())]
        near = [c.arrival_s <= lead_s + margin_s + detour_s[c.turn.signal]
                for c, lead_s in zip(candidates, lead.tolist())]
        busy = {c.turn.signal for c, is_due in zip(candidates, due) if is_due}
        active, approaching, later = [], {}, []
        stall_s = self.config.stall_after_s
        for c, lead_s, is_due, is_near in zip(candidates, lead.tolist(), due, near):
            if (dwelling.get(c.turn.signal) == c.vehicle_id and now - c.track.moved_s > stall_s
                    and now - c.track.entered_s.get(c.key, now) > stall_s
                    and now - self.last_discharge_s[c.turn.lanes].max() > stall_s):
                # Its green shows but neither the vehicle nor the queue ahead of it moves
                # (a blocked head, or a full exit): holding it only starves the streets
                # that could unblock it. Let adaptive control run.
                c.track.suspended[c.key] = now + self.config.stall_release_s
                del c.track.entered_s[c.key]
                self.counts.stalls += 1
                continue
            if not (is_due or (is_near and c.turn.signal in busy)):
                if is_near:
                    approaching.setdefault(c.turn.signal, c.phase)
                later.append(PreemptionRequest(c.vehicle_id, c.turn.signal, c.phase, c.arrival_s, lead_s, IDLE))
                continue
            if c.key not in c.track.entered_s:
                c.track.entered_s[c.key] = now
                c.track.lane_phase[c.key] = c.phase != c.turn.phase
                self.counts.entries += 1
            entered = c.track.entered_s[c.key]
            if now - entered > self.config.max_presence_s:
                c.track.released.add(c.key)
                self.counts.timeouts += 1
                continue
            active.append((c, lead_s))
        return active, approaching, later

    def _rank(self, active, dwelling: dict[int, str]) -> tuple[dict[int, int], list[PreemptionRequest]]:
        """Per signal, the winning phase: by priority class, the vehicle already in
        dwell, then arrival; requests its phase serves ride along, the rest wait."""
        winners: dict[int, int] = {}
        served = []

        def rank(item):
            c = item[0]
            return c.track.vehicle.priority, dwelling.get(c.turn.signal) != c.vehicle_id, c.arrival_s, c.vehicle_id

        for c, lead_s in sorted(active, key=rank):
            signal, phase = c.turn.signal, winners.get(c.turn.signal)
            status = ENTRY
            if phase is None:
                winners[signal] = phase = c.phase
                self.serving[signal] = c.vehicle_id
            elif phase not in c.served_by:
                self.counts.conflicts += 1
                phase, status = c.phase, WAITING
            served.append(PreemptionRequest(c.vehicle_id, signal, phase, c.arrival_s, lead_s, status))
        return winners, served

    # -- tracks --------------------------------------------------------------
    def _update_tracks(self, frame: DetectorFrame) -> None:
        for vehicle in frame.emergency:
            track = self.tracks.get(vehicle.vehicle_id)
            if track is None:
                track = self.tracks[vehicle.vehicle_id] = _Track(vehicle, moved_s=vehicle.seen_s)
            elif vehicle.seen_s < track.vehicle.seen_s:
                continue  # an older report than the one we have
            previous = track.vehicle
            if (vehicle.speed_mps >= 1.0 or vehicle.edge != previous.edge
                    or abs(vehicle.position_m - previous.position_m) >= 1.0):
                track.moved_s = vehicle.seen_s
            track.vehicle = vehicle
            limit = self.network.edge_speed_mps[vehicle.edge]
            track.speed_ratio = max(track.speed_ratio, vehicle.speed_mps / max(limit, 0.1))
            self._follow(track, vehicle, frame)
        for vehicle_id in [v for v, t in self.tracks.items()
                           if frame.time_s - t.vehicle.seen_s > self.config.drop_after_s]:
            del self.tracks[vehicle_id]

    def _follow(self, track: _Track, vehicle: EmergencyVehicle, frame: DetectorFrame) -> None:
        """Place the vehicle on its route; (re)build the route when it left it or changed."""
        route = track.route
        if vehicle.route:
            if route[track.index:] == vehicle.route:
                return
            ahead = len(route) - len(vehicle.route)
            if ahead > track.index and route[ahead:] == vehicle.route:
                track.index = ahead
                return
            self._set_route(track, vehicle.route)
            return
        if vehicle.edge in route[track.index:]:
            track.index = route.index(vehicle.edge, track.index)
            return
        if vehicle.destination >= 0:
            self._set_route(track, self._route_to(vehicle.edge, vehicle.destination, frame))
        else:
            self._set_route(track, ())
        if not track.route:
            self.counts.unroutable += 1

    def _set_route(self, track: _Track, route: tuple[int, ...]) -> None:
        net = self.network
        track.route = route
        track.index = 0
        edges = np.asarray(route, dtype=np.int64)
        track.time_to_end_s = np.cumsum(net.edge_length_m[edges] / np.maximum(net.edge_speed_mps[edges], 0.1))
        track.stops = [(k, self.turns[pair]) for k, pair in enumerate(zip(route, route[1:])) if pair in self.turns]

    def _route_to(self, edge: int, destination: int, frame: DetectorFrame) -> tuple[int, ...]:
        """Fastest route under current conditions: free-flow time plus the time to
        discharge each edge's standing queue; no U-turn unless there is no other way."""
        net = self.network
        on_road = net.lane_edge >= 0
        queued = np.bincount(net.lane_edge[on_road], weights=frame.halting[on_road], minlength=len(net.edge_ids))
        self._edge_queue_s[:] = self.config.queue_headway_s * queued / np.maximum(net.edge_n_lanes, 1)
        delay = self._edge_queue_s

        def cost(u: int, v: int, data: dict) -> float | None:
            return None if data["turnaround"] else data["travel_time_s"] + delay[v]

        try:
            # U-turns only where nothing else leads there: in traffic they wait for a gap.
            try:
                path = nx.shortest_path(net.graph, edge, destination, weight=cost)
            except nx.NetworkXNoPath:
                path = nx.shortest_path(net.graph, edge, destination,
                                        weight=lambda u, v, data: data["travel_time_s"] + delay[v])
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return ()
        return tuple(int(e) for e in path)

    # -- requests ------------------------------------------------------------
    def _candidates(self, frame: DetectorFrame) -> list[_Candidate]:
        """(track, turn key, turn, estimated arrival s, phase) for every signal ahead
        of every vehicle within the horizon, or already preempted for it. A turn
        asks for its lane phase while vehicles stand on its lanes, and keeps the
        choice from entry until the vehicle is through."""
        now = frame.time_s
        out = []
        lengths, speeds = self.network.edge_length_m, self.network.edge_speed_mps
        for track in self.tracks.values():
            if not track.stops:
                continue
            vehicle, k0 = track.vehicle, track.index
            edge = track.route[k0]
            left_m = max(lengths[edge] - vehicle.position_m, 0.0)
            # Free-flow time from the vehicle to the end of route edge k is
            # to_end_s + time_to_end_s[k], less the time since it was seen.
            to_end_s = left_m / max(speeds[edge], 0.1) - track.time_to_end_s[k0]
            elapsed_s = now - vehicle.seen_s
            for k, turn in track.stops:
                if k < k0:
                    continue
                key = (track.route[k], track.route[k + 1])
                if key in track.released or track.suspended.get(key, -np.inf) > now:
                    continue
                eta = max((to_end_s + track.time_to_end_s[k]) / track.speed_ratio - elapsed_s, 0.0)
                if eta > self.config.horizon_s and key not in track.entered_s:
                    break
                lane_phase = track.lane_phase[key] if key in track.entered_s else (
                    turn.lane_phase != turn.phase and frame.halting[turn.lanes].sum() >= 1.0)
                phase, served_by = ((turn.lane_phase, turn.lane_served_by) if lane_phase
                                    else (turn.phase, turn.served_by))
                out.append(_Candidate(track, key, turn, eta, phase, served_by))
        return out

    def _lead_s(self, candidates: list[_Candidate], frame: DetectorFrame, signals: SignalView) -> np.ndarray:
        net, config = self.network, self.config
        turns = [c.turn for c in candidates]
        lane_ptr = np.concatenate(([0], np.cumsum([len(t.lanes) for t in turns]))).astype(np.int64)
        lead = np.zeros(len(turns))
        self.kernels.preemption_lead_s(
            np.array([t.signal for t in turns], dtype=np.int32), np.array([c.phase for c in candidates], dtype=np.int32),
            lane_ptr, np.concatenate([t.lanes for t in turns]), frame.halting, net.phase_ptr,
            net.transition_offset, net.needs_clearance, net.ends_crossing, net.crossing_clearance_s, net.yellow_s,
            net.all_red_s, signals.green_phase,
            signals.next_phase, signals.stage, signals.stage_time_s, self.timing.preemption_min_green_s,
            config.queue_start_s, config.queue_headway_s, lead)
        return lead


def signal_turns(network: Network) -> dict[tuple[int, int], _Turn]:
    """Every (from edge, to edge) through a signal, with the phases that serve it."""
    links: dict[tuple[int, int], tuple[int, set[int], set[int]]] = {}
    lane_links: dict[int, set[int]] = {}   # approach lane -> every link leaving it
    for signal, link, lane_in, lane_out in zip(network.move_signal.tolist(), network.move_link.tolist(),
                                               network.move_in_lane.tolist(), network.move_out_lane.tolist()):
        key = (int(network.lane_edge[lane_in]), int(network.lane_edge[lane_out]))
        lane_links.setdefault(lane_in, set()).add(link)
        entry = links.setdefault(key, (signal, set(), set()))
        if entry[0] == signal:
            entry[1].add(link)
            entry[2].add(lane_in)
    turns = {}
    for key, (signal, turn_links, lanes) in links.items():
        n_links = int(network.signal_n_links[signal])
        levels = [network.phase_green_level[network.phase_link_ptr[p]:network.phase_link_ptr[p] + n_links]
                  for p in network.phases_of(signal)]
        chosen = sorted(turn_links)
        scores = np.array([int(level[chosen].sum()) for level in levels])
        best = int(np.argmax(scores))
        if scores[best] == 0:
            continue  # no phase of the net ever gives this turn green
        whole_lanes = sorted(set().union(*(lane_links[lane] for lane in lanes)))
        clears = np.array([bool(np.all(level[whole_lanes] > 0)) for level in levels])
        lane_phase = best if clears[best] or not clears.any() else int(np.argmax(np.where(clears, scores, -1)))
        turns[key] = _Turn(signal, best, _served_by(levels, chosen, best), np.array(sorted(lanes), dtype=np.int32),
                           lane_phase, _served_by(levels, chosen, lane_phase))
    return turns


def _served_by(levels: list[np.ndarray], links: list[int], phase: int) -> frozenset[int]:
    """The phases in which every one of `links` green in `phase` is green too."""
    green = levels[phase][links] > 0
    return frozenset(p for p, level in enumerate(levels) if np.all(level[links][green] > 0))
