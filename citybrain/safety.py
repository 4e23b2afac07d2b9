"""The always-on safety layer, and an independent monitor of what SUMO showed.

`SafetyLayer` owns every signal's stage machine. Controllers only *request*
phases; the layer decides what is displayed: candidate phases from the net's
own program, yellow then all-red clearance of the net's own length before any
link loses green, and the minimum green.

`CommandGuard` is the gateway's conflict monitor: it refuses a commanded state
that would show foes both protected green, take a vehicle link from green to
red without yellow, or end a yellow early, whoever sent it.

`SafetyMonitor` audits the state strings read back from the simulator, for any
controller (ours, or SUMO's fixed/actuated programs), against the net's
conflict data. It is how `safety_violations` is counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from .config import SignalTiming
from . import kernels as compiled_kernels
from .kernels import STAGE_GREEN, STAGE_INTERIM, STAGE_YELLOW, count_conflicting_greens
from .network import Network

__all__ = ["SafetyLayer", "SafetyMonitor", "SafetyReport", "CommandGuard", "GUARD_REASONS"]

N_STAGES = STAGE_INTERIM + 1   # kernels.STAGE_* are 0..STAGE_INTERIM


class SafetyLayer:
    """Stage machine of every signal: green -> [crossing clearance] -> yellow -> all-red -> green,
    or green -> the program's own interim -> green."""

    def __init__(self, network: Network, timing: SignalTiming, kernels: ModuleType = compiled_kernels):
        self.network = network
        self.kernels = kernels
        n = network.n_signals
        self.dt_s = timing.control_period_s
        # The floor, and at least twice the clearance, but never more than the shortest
        # green the program itself gives a phase: its plan must run as the city wrote it.
        shortest_plan_green_s = np.minimum.reduceat(network.plan_green_s, network.plan_ptr[:-1])
        self.min_green_s = np.maximum(timing.min_green_s, np.minimum(
            timing.min_green_of(network.yellow_s + network.all_red_s), shortest_plan_green_s)).astype(np.float64)
        self._preempt_min_green_s = np.minimum(self.min_green_s, timing.preemption_min_green_s)
        self._min_green_now_s = self.min_green_s.copy()
        self.green_phase = np.zeros(n, dtype=np.int32)
        self.next_phase = np.zeros(n, dtype=np.int32)
        self.stage = np.full(n, STAGE_GREEN, dtype=np.int8)
        self.stage_time_s = np.zeros(n, dtype=np.float64)
        self.changed = np.zeros(n, dtype=bool)
        self._nowhere = np.zeros(n, dtype=bool)
        self._n_phases = np.diff(network.phase_ptr).astype(np.int64)
        sizes = N_STAGES * self._n_phases * self._n_phases       # stages x phase x next phase
        self._state_base = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self._state_table: list[str | None] = [None] * int(sizes.sum())
        self._codes = np.zeros(n, dtype=np.int64)

    def advance(self, requested: np.ndarray, preempting: np.ndarray | None = None,
                on_plan: np.ndarray | None = None) -> np.ndarray:
        """Apply this period's requests; returns the mask of signals whose display changed.

        At signals with preempting[i], an emergency vehicle's request may end the
        green after `SignalTiming.preemption_min_green_s`; clearance stays whole.
        Signals with on_plan[i] run their program's plan, and change through its own
        interims; the others through our clearance (the program's longest yellow and
        all-red), as adaptive control chooses phases the program may not put together."""
        net = self.network
        min_green_s = self.min_green_s
        if preempting is not None and preempting.any():
            min_green_s = self._min_green_now_s
            np.copyto(min_green_s, self.min_green_s)
            np.copyto(min_green_s, self._preempt_min_green_s, where=preempting)
        self.kernels.advance_signals(
            requested, self.dt_s, net.phase_ptr, net.transition_offset, net.needs_clearance, net.ends_crossing,
            net.crossing_clearance_s, net.yellow_s, net.all_red_s, net.interim_ptr, net.interim_s,
            self._nowhere if on_plan is None else on_plan, min_green_s,
            self.green_phase, self.next_phase, self.stage, self.stage_time_s, self.changed,
        )
        return self.changed

    def start_on_plan(self, time_s: float) -> np.ndarray:
        """Put every signal where its program's cycle is at time_s (as SUMO's own run
        of the program would show it); returns each signal's plan step."""
        net = self.network
        steps = np.zeros(net.n_signals, dtype=np.int32)
        for signal in range(net.n_signals):
            step, into_s = self.kernels.plan_position(net.plan_ptr, net.plan_end_s, net.plan_green_s,
                                                      net.program_cycle_s, net.program_offset_s, time_s, signal)
            first, count = int(net.plan_ptr[signal]), int(net.plan_ptr[signal + 1] - net.plan_ptr[signal])
            phase = int(net.plan_phase[first + step])
            previous = int(net.plan_phase[first + (step - 1) % count])
            transition = net.transition(signal, previous, phase)
            steps[signal] = step
            self.next_phase[signal] = phase
            if into_s < 0.0 and net.interim_ptr[transition + 1] > net.interim_ptr[transition] and previous != phase:
                self.green_phase[signal] = previous
                self.stage[signal] = STAGE_INTERIM
                self.stage_time_s[signal] = -into_s
            else:
                self.green_phase[signal] = phase
                self.stage[signal] = STAGE_GREEN
                self.stage_time_s[signal] = max(into_s, 0.0)
        return steps

    def adopt(self, signals: np.ndarray, phase: np.ndarray, next_phase: np.ndarray, stage: np.ndarray,
              stage_time_s: np.ndarray, lag_s: float = 0.0) -> np.ndarray:
        """Take over what a field device reports it is showing (after an engine
        restart, or where it refused a command): the stage machine continues from
        there, so clearance in progress is completed, never cut. `stage_time_s` is
        as reported; the stage machine keeps `stage_time_s - lag_s` (`lag_s`: how much
        of its next period's step had passed when the report was true), so its next
        step never counts time the signal has not shown. Returns which reports were
        possible (a phase and stage of that signal); the others are left as they were."""
        net = self.network
        n_phases = np.diff(net.phase_ptr)[signals]
        valid = ((phase >= 0) & (phase < n_phases) & (next_phase >= 0) & (next_phase < n_phases)
                 & (stage >= 0) & (stage < N_STAGES) & np.isfinite(stage_time_s) & (stage_time_s >= 0))
        for k in np.flatnonzero(valid & (stage == STAGE_INTERIM)).tolist():
            transition = net.transition(int(signals[k]), int(phase[k]), int(next_phase[k]))
            valid[k] = phase[k] != next_phase[k] and net.interim_ptr[transition + 1] > net.interim_ptr[transition]
        signals = signals[valid]
        self.green_phase[signals] = phase[valid]
        self.next_phase[signals] = next_phase[valid]
        self.stage[signals] = stage[valid]
        self.stage_time_s[signals] = stage_time_s[valid] - lag_s
        return valid

    def state_strings(self, signals: np.ndarray) -> tuple[str, ...]:
        """The SUMO state string each of `signals` shows now. Strings are built once
        per (signal, stage, phase, next phase) and kept in a flat table."""
        self.kernels.state_codes(signals, self._state_base, self._n_phases, self.stage, self.green_phase,
                                 self.next_phase, self._codes)
        codes = self._codes[:len(signals)].tolist()
        table = self._state_table
        out = [table[code] for code in codes]
        # An interim's state depends on its time, so it is not in the table.
        for k in np.flatnonzero(self.stage[signals] == STAGE_INTERIM).tolist():
            signal = int(signals[k])
            out[k] = self.network.interim_state(signal, int(self.green_phase[signal]), int(self.next_phase[signal]),
                                                float(self.stage_time_s[signal]))
        if None in out:   # first time this (signal, stage, phase, next phase) shows: build its string once
            for k, code in enumerate(codes):
                if out[k] is None:
                    signal = int(signals[k])
                    out[k] = table[code] = self.network.signal_state(
                        signal, int(self.stage[signal]), int(self.green_phase[signal]), int(self.next_phase[signal]))
        return tuple(out)


@dataclass
class SafetyReport:
    conflicting_green_steps: int = 0     # (signal, step) pairs showing two foes in protected green
    missing_yellow: int = 0              # a link went from green straight to red
    short_yellow: int = 0                # a link's yellow was shorter than its signal's yellow_s
    short_green: int = 0                 # a link's green ended before min_green_s
    # A vehicle link turned green sooner after a crossing's walk ended than the net's
    # program's walk clearance, where it has one.
    short_walk_clearance: int = 0
    by_signal: dict[str, int] = field(default_factory=dict)

    @property
    def violations(self) -> int:
        return (self.conflicting_green_steps + self.missing_yellow + self.short_yellow + self.short_green
                + self.short_walk_clearance)

    def as_dict(self) -> dict:
        return {
            "conflicting_green_steps": self.conflicting_green_steps,
            "missing_yellow": self.missing_yellow,
            "short_yellow": self.short_yellow,
            "short_green": self.short_green,
            "short_walk_clearance": self.short_walk_clearance,
        }


_GREEN = np.frombuffer(b"Gg", dtype=np.uint8)
_OFF = np.frombuffer(b"oO", dtype=np.uint8)
_YELLOW = np.frombuffer(b"y", dtype=np.uint8)


class SafetyMonitor:
    """Checks the signal states a simulator actually displayed, step by step."""

    def __init__(self, network: Network, min_green_s: float, dt_s: float, preemption_min_green_s: float = 0.0):
        self.network = network
        self.dt_s = dt_s
        # The floor, or less where the program itself shows a link green for less.
        self.min_green_s = np.minimum(min_green_s, network.link_green_s)
        self.preemption_min_green_s = np.minimum(preemption_min_green_s, self.min_green_s)
        self.link_offset = network.link_offset
        n_links = int(self.link_offset[-1])
        owner = np.repeat(np.arange(network.n_signals), network.signal_n_links)
        self.link_yellow_s = network.link_yellow_s
        # Clearance and minimum green are judged on vehicle links only: pedestrian
        # crossings go from green to red with no yellow by design.
        self.vehicle_link = network.vehicle_link
        # Where the program has a walk clearance, after a crossing's walk ends no vehicle
        # link of that signal may turn green before it has passed (the nets' own programs
        # give more on most changes: the walk clearance, then yellow and all-red; after an
        # all-pedestrian phase, only their all-red).
        walked = network.crossing_clearance_s > 0.0
        self.walk_link = ~self.vehicle_link & walked[owner]
        self.walk_clear_s = np.minimum(network.crossing_clearance_s, network.program_walk_gap_s)
        self.since_walk_s = np.full(network.n_signals, np.inf)
        self.green_run_s = np.zeros(n_links)
        self.yellow_run_s = np.zeros(n_links)
        self.was_green = np.zeros(n_links, dtype=bool)
        self.was_yellow = np.zeros(n_links, dtype=bool)
        self.seen_green_start = np.zeros(n_links, dtype=bool)  # green began while observed
        self.observed = False
        self.conflicts = np.zeros(network.n_signals, dtype=np.int64)
        self.owner = owner
        self.report = SafetyReport()

    def observe(self, states: list[str], preempting: np.ndarray | None = None) -> None:
        """`states[i]` is the state string signal i showed during the last period;
        at signals with preempting[i] an emergency preemption allowed a green to
        end after `preemption_min_green_s`."""
        codes = np.frombuffer("".join(states).encode("ascii"), dtype=np.uint8)
        if codes.size != self.green_run_s.size:
            raise ValueError(f"expected {self.green_run_s.size} link states, got {codes.size}")
        green = np.isin(codes, _GREEN)
        yellow = codes == _YELLOW[0]
        protected = codes == _GREEN[0]
        report = self.report

        count_conflicting_greens(protected, self.link_offset, self.network.conflict_offset,
                                 self.network.conflict, self.conflicts)
        bad = self.conflicts > 0
        report.conflicting_green_steps += int(bad.sum())
        self._blame(bad.astype(np.int64))

        # 'o'/'O' (signal off: yield, or go) stops nobody, so reaching it needs no yellow.
        red = ~green & ~yellow & ~np.isin(codes, _OFF) & self.vehicle_link
        ended_green = self.was_green & ~green & self.vehicle_link
        missing = self.was_green & red
        short_yellow = self.was_yellow & red & (self.yellow_run_s < self.link_yellow_s - 1e-6)
        min_green_s = self.min_green_s
        if preempting is not None and preempting.any():
            min_green_s = np.where(preempting[self.owner], self.preemption_min_green_s, self.min_green_s)
        short_green = ended_green & self.seen_green_start & (self.green_run_s < min_green_s - 1e-6)
        walk_ended = self.was_green & ~green & self.walk_link
        self.since_walk_s += self.dt_s
        self.since_walk_s[self.owner[walk_ended]] = 0.0
        new_green = green & ~self.was_green & self.vehicle_link
        short_walk = new_green & (self.since_walk_s[self.owner] < self.walk_clear_s[self.owner] - 1e-6)
        report.short_walk_clearance += int(short_walk.sum())
        report.missing_yellow += int(missing.sum())
        report.short_yellow += int(short_yellow.sum())
        report.short_green += int(short_green.sum())
        self._blame_links(missing | short_yellow | short_green | short_walk)

        # A green already on at the first look began unobserved (a program's offset starts it mid-green).
        began = green & ~self.was_green if self.observed else np.zeros_like(green)
        self.seen_green_start = np.where(began, True, self.seen_green_start & green)
        self.green_run_s = np.where(green, self.green_run_s + self.dt_s, 0.0)
        if not self.observed:   # a yellow on at the first look began unobserved
            self.yellow_run_s[yellow] = np.inf
        self.observed = True
        self.yellow_run_s = np.where(yellow, self.yellow_run_s + self.dt_s, 0.0)
        self.was_green, self.was_yellow = green, yellow

    def _blame(self, events_per_signal: np.ndarray) -> None:
        for index in np.flatnonzero(events_per_signal):
            sid = self.network.signal_ids[index]
            self.report.by_signal[sid] = self.report.by_signal.get(sid, 0) + int(events_per_signal[index])

    def _blame_links(self, links: np.ndarray) -> None:
        if links.any():
            self._blame(np.bincount(self.owner[links], minlength=self.network.n_signals))


# Wall-clock times are ~1.8e9 s, where a double resolves 0.24 us: the sum of a
# yellow's periods then differs from its length by a few us. 0.1 ms is far below
# what any cabinet resolves.
_CLOCK_TOLERANCE_S = 1e-4

# Why a CommandGuard refuses a state change.
GUARD_REASONS = ("bad_state", "conflicting_green", "missing_yellow", "short_yellow")


class CommandGuard:
    """What a cabinet's conflict monitor checks, for commands arriving from afar.
    The engine checks every command it sends with it, and a gateway every command it applies."""

    def __init__(self, network: Network):
        self.network = network
        self.link_offset = network.link_offset
        n_links = int(self.link_offset[-1])
        self.vehicle_link = network.vehicle_link
        self.shown = [""] * network.n_signals
        self.yellow_since_s = np.zeros(n_links)

    def check(self, signal: int, state: str, now_s: float) -> str | None:
        """None if `state` may replace what `signal` shows now; else the reason it may not."""
        n = int(self.network.signal_n_links[signal])
        if len(state) != n or any(ch not in _STATE_CHARS for ch in state):
            return "bad_state"
        protected = np.frombuffer(state.encode("ascii"), dtype=np.uint8) == _GREEN[0]
        if np.any(np.outer(protected, protected) & self.network.conflict_matrix(signal)):
            return "conflicting_green"
        shown = self.shown[signal]
        if not shown:
            return None
        start = int(self.link_offset[signal])
        for link, (before, after) in enumerate(zip(shown, state)):
            if not self.vehicle_link[start + link] or after in "GgyoO" or before == after:
                continue
            if before in "Gg":
                return "missing_yellow"
            shortest_s = self.network.link_yellow_s[start + link]
            if before == "y" and now_s - self.yellow_since_s[start + link] < shortest_s - _CLOCK_TOLERANCE_S:
                return "short_yellow"
        return None

    def adopt(self, signal: int, stage: int, phase: int, next_phase: int, stage_time_s: float, now_s: float) -> None:
        """Record that `signal` has shown that stage for `stage_time_s` at `now_s`, as a
        field device reports it: each yellow link's yellow began when the stage
        showed it first, without a break, up to now."""
        net = self.network
        state = net.stage_state(signal, stage, phase, next_phase, stage_time_s)
        start = int(self.link_offset[signal])
        yellow_s = np.zeros(len(state))
        if stage == STAGE_YELLOW:
            yellow_s[:] = stage_time_s
        elif stage == STAGE_INTERIM:
            transition = net.transition(signal, phase, next_phase)
            begun_s = 0.0
            for k in range(int(net.interim_ptr[transition]), int(net.interim_ptr[transition + 1])):
                if begun_s > stage_time_s + 1e-9:
                    break
                shown = np.frombuffer(net.interim_states[k].encode("ascii"), dtype=np.uint8) == _YELLOW[0]
                yellow_s = np.where(shown, yellow_s, 0.0)
                yellow_s[shown] += min(float(net.interim_s[k]), stage_time_s - begun_s)
                begun_s += float(net.interim_s[k])
        self.shown[signal] = state
        self.yellow_since_s[start:start + len(state)] = now_s - yellow_s

    def shown_now(self, signal: int, state: str, now_s: float) -> None:
        """Record that `signal` shows `state` from `now_s` on."""
        start = int(self.link_offset[signal])
        for link, (before, after) in enumerate(zip(self.shown[signal] or " " * len(state), state)):
            if after == "y" and before != "y":
                self.yellow_since_s[start + link] = now_s
        self.shown[signal] = state


_STATE_CHARS = frozenset("rRyYgGsuoO")
