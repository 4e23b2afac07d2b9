"""Do no harm: a supervisor that hands a signal back to its city's plan when
adaptive control is visibly losing there, and takes it back later.

What "losing" means, from what the detectors and our own signal states show:
an approach lane has had less than half the green the city's plan gives it, and
- its queue keeps rising and is already longer than one plan cycle clears
  (`starved`), or
- its queue fills the lane, so it spills back into the junction upstream
  (`spill_back`),
continuously for `harm_after_s`. Where the plan would also have failed the
lane (it got at least its plan share of green) adaptive control is not the
cause, and nothing is handed back. A handed-back signal runs its plan for
`hold_s`; each repeat doubles the hold, up to `max_hold_s`.

A fixed-time program is handed back as our run of its plan. An actuated one
extends its phases from its own detectors, which our copy of it only
approximates (on the Hamburg test field, three handovers to the copy cost 4 s of
all-vehicle delay): it is handed back only where its own controller can run it
(`Engine(own_controllers=True)`: in SUMO), else it stays adaptive.
"""
from __future__ import annotations

import numpy as np

from .config import ControllerConfig, SupervisorConfig
from .network import Network

__all__ = ["Supervisor", "REASONS"]

# Why a signal was handed back (index = reason code; 0: it was not).
REASONS = ("none", "starved", "spill_back")
_STARVED, _SPILL_BACK = 1, 2


class Supervisor:
    def __init__(self, network: Network, config: SupervisorConfig | None = None,
                 controller_config: ControllerConfig | None = None, eligible: np.ndarray | None = None):
        """`eligible`: the signals that may be handed back (default: those with a fixed-time program)."""
        self.network = net = network
        self.eligible = network.program_static if eligible is None else eligible
        self.config = config or SupervisorConfig()
        controller_config = controller_config or ControllerConfig()
        self.entry_signal, self.entry_lane = net.approaches
        n_entries = self.entry_signal.size
        self.plan_share = net.lane_plan_share[self.entry_lane]
        cycle_s = net.program_cycle_s[self.entry_signal]
        self.cycle_service_veh = controller_config.saturation_veh_per_s * self.plan_share * cycle_s
        self.full_veh = (controller_config.exit_full_share * net.lane_length_m[self.entry_lane]
                         / controller_config.jam_spacing_m)
        self.green_share = self.plan_share.copy()
        self.queue_fast = np.zeros(n_entries)
        self.queue_slow = np.zeros(n_entries)
        n = net.n_signals
        self.harm_s = np.zeros(n)
        self.plan_until_s = np.full(n, -np.inf)
        self.next_hold_s = np.full(n, self.config.hold_s)
        self.reason = np.zeros(n, dtype=np.int8)           # why it is (or was last) on the plan
        self.handovers = np.zeros(n, dtype=np.int64)
        self.plan_s = np.zeros(n)                           # time on the plan, in all
        self.on_plan = np.zeros(n, dtype=bool)
        self._started = False

    def review(self, time_s: float, dt_s: float, halting: np.ndarray, green_phase: np.ndarray,
               stage: np.ndarray) -> np.ndarray:
        """One period: update what each approach got and how its queue goes; returns
        the signals to run on their plan (do not modify)."""
        config, net = self.config, self.network
        queue = halting[self.entry_lane]
        if not self._started:
            self._started = True
            self.queue_fast[:] = self.queue_slow[:] = queue
        lane_green = net.lanes_green(green_phase, stage)[self.entry_lane]
        slow, fast = min(dt_s / config.window_s, 1.0), min(dt_s / config.fast_s, 1.0)
        self.green_share += slow * (lane_green - self.green_share)
        self.queue_fast += fast * (queue - self.queue_fast)
        self.queue_slow += slow * (queue - self.queue_slow)

        short_of_plan = self.green_share < config.green_ratio * self.plan_share
        starved = short_of_plan & (self.queue_fast > self.queue_slow + config.rising_veh) \
            & (self.queue_fast > self.cycle_service_veh)
        spilling = short_of_plan & (queue >= self.full_veh)
        harm = np.zeros(net.n_signals, dtype=np.int8)
        np.maximum.at(harm, self.entry_signal[starved], _STARVED)
        np.maximum.at(harm, self.entry_signal[spilling], _SPILL_BACK)

        self.on_plan[:] = self.plan_until_s > time_s
        self.plan_s[self.on_plan] += dt_s
        self.harm_s = np.where((harm > 0) & ~self.on_plan, self.harm_s + dt_s, 0.0)
        hand_back = (self.harm_s >= config.harm_after_s) & self.eligible
        if hand_back.any():
            self.plan_until_s[hand_back] = time_s + self.next_hold_s[hand_back]
            self.next_hold_s[hand_back] = np.minimum(2 * self.next_hold_s[hand_back], config.max_hold_s)
            self.reason[hand_back] = harm[hand_back]
            self.handovers[hand_back] += 1
            self.harm_s[hand_back] = 0.0
            self.on_plan |= hand_back
        return self.on_plan

    def report(self) -> dict:
        """Handovers and time on the plan, in all and per signal that was handed back."""
        ids = self.network.signal_ids
        return {
            "handovers": int(self.handovers.sum()),
            "plan_signal_s": round(float(self.plan_s.sum()), 1),
            "signals": {ids[i]: {"handovers": int(self.handovers[i]), "plan_s": round(float(self.plan_s[i]), 1),
                                 "reason": REASONS[self.reason[i]]}
                        for i in np.flatnonzero(self.handovers).tolist()},
        }
