"""Controllers: detector frame in, requested phases out. No I/O here.

`fixed` and `actuated` are SUMO's own programs; they are not `Controller`s
because the simulator runs them itself (see `NATIVE_PROGRAMS`).
"""
from __future__ import annotations

from types import ModuleType
from typing import Protocol

import numpy as np

from . import kernels as compiled_kernels
from .config import ControllerConfig
from .frame import DetectorFrame
from .network import Network

__all__ = [
    "Controller",
    "SignalView",
    "MaxPressureController",
    "CityBrainController",
    "FixedTimePlan",
    "NATIVE_PROGRAMS",
    "CONTROLLER_NAMES",
    "make_controller",
]

# Controllers the simulator runs by itself, by SUMO tlLogic type.
NATIVE_PROGRAMS = {"fixed": "static", "actuated": "actuated"}


class SignalView(Protocol):
    """What a controller may read of the safety layer (arrays indexed by signal)."""

    green_phase: np.ndarray
    next_phase: np.ndarray
    stage: np.ndarray
    stage_time_s: np.ndarray
    min_green_s: np.ndarray


class Controller(Protocol):
    name: str

    def decide(self, frame: DetectorFrame, signals: SignalView, requested: np.ndarray) -> None:
        """Write into requested[i] the local phase signal i should show next, or -1 to keep."""


class _PressureController:
    """Shared machinery: demand per detection zone, pressure per phase, phase choice,
    all in one compiled call (`kernels.decide_pressure`)."""

    name = ""

    # Weight of a moving vehicle in a zone relative to a halted one (0: queues only).
    moving_weight = 0.0
    # A green lane that has not discharged for this long stops counting for its phase (0: never).
    blocked_after_s = 0.0

    def __init__(self, network: Network, config: ControllerConfig, kernels: ModuleType = compiled_kernels):
        self.network = network
        self.config = config
        self.kernels = kernels
        self.lane_demand = np.zeros(network.n_lanes)
        self.demand = np.zeros(network.n_lanes)
        self.score = np.zeros(network.n_phases)
        self.max_green_s = np.full(network.n_signals, config.max_green_s)
        # Both controllers switch as soon as another phase scores higher (see CityBrainController).
        self.switch_margin = np.zeros(network.n_signals)
        self.previous_halting = np.zeros(network.n_lanes)
        self.last_discharge_s = np.zeros(network.n_lanes)
        self._started = False

    def decide(self, frame: DetectorFrame, signals: SignalView, requested: np.ndarray) -> None:
        net = self.network
        if not self._started:
            self._started = True
            self.last_discharge_s[:] = frame.time_s   # nothing is known to be blocked at the start
        self.kernels.decide_pressure(
            frame.halting, frame.vehicles, frame.time_s, self.moving_weight, net.zone_ptr, net.zone_lane,
            net.zone_weight, net.term_ptr, net.term_in_lane, net.term_out_lane, net.term_weight, net.phase_ptr,
            signals.green_phase, signals.stage, signals.stage_time_s, signals.min_green_s, self.max_green_s,
            self.switch_margin, self.blocked_after_s, self.previous_halting, self.last_discharge_s,
            self.lane_demand, self.demand, self.score, requested)


class MaxPressureController(_PressureController):
    """Varaiya's max-pressure: serve the phase with the largest sum of
    (queue upstream - queue downstream) over its green movements."""

    name = "maxpressure"


class CityBrainController(_PressureController):
    """Max-pressure over queued *and approaching* vehicles, with a max green.

    - Demand on a lane counts its queue plus, at a discount, the moving vehicles
      in its detection zone that will join it within the next decisions; plain
      max-pressure sees a platoon only once it has stopped.
    - Downstream is weighed the same way, so green is not spent feeding an
      exit lane that is filling up (spill-back).
    - max green bounds the wait of every other approach.
    - A lane that is green but has not discharged a vehicle for
      `blocked_after_s` (a permissive turner waiting for a gap at the head of
      a shared lane, or a full exit) no longer counts for the phase that is
      holding it green; its pressure then pulls towards a phase that serves it
      (the protected turn). On cologne8, where such lanes jammed, mean delay
      over 3 seeds fell from 78.1 s to 33.1 s.
    The discount (0.25), max green (60 s) and blocked time (6 s) are the same
    for every network; a switching threshold equal to the discharge lost in
    clearance was tried and raised delay (117.7 s vs 106.3 s).
    """

    name = "citybrain"

    def __init__(self, network: Network, config: ControllerConfig, kernels: ModuleType = compiled_kernels):
        super().__init__(network, config, kernels)
        self.moving_weight = config.moving_vehicle_weight
        self.blocked_after_s = config.blocked_after_s


class FixedTimePlan:
    """The net's own fixed-time plan, run by our safety layer: each candidate phase
    in program order for its program duration. The fallback for a signal whose
    detectors went silent, and the gateway's local plan when the engine is gone."""

    name = "fixed-plan"

    def __init__(self, network: Network, period_s: float, kernels: ModuleType = compiled_kernels):
        self.network = network
        self.period_s = period_s
        self.kernels = kernels
        self.everywhere = np.ones(network.n_signals, dtype=bool)

    def decide(self, frame: DetectorFrame | None, signals: SignalView, requested: np.ndarray,
               active: np.ndarray | None = None) -> None:
        """Overwrite requested[i] for every signal with active[i] (default: all)."""
        self.kernels.fixed_time_requests(self.network.phase_ptr, self.network.phase_green_s,
                            self.everywhere if active is None else active,
                            signals.green_phase, signals.stage, signals.stage_time_s, self.period_s, requested)


_ADAPTIVE = {cls.name: cls for cls in (MaxPressureController, CityBrainController)}
CONTROLLER_NAMES = (*NATIVE_PROGRAMS, *_ADAPTIVE)


def make_controller(name: str, network: Network, config: ControllerConfig | None = None,
                    kernels: ModuleType = compiled_kernels) -> Controller:
    """`kernels`: citybrain.kernels (numba, the default) or citybrain.reference (plain numpy, for benchmarks)."""
    try:
        cls = _ADAPTIVE[name]
    except KeyError:
        raise ValueError(f"unknown adaptive controller {name!r}; choose from {', '.join(_ADAPTIVE)}") from None
    return cls(network, config or ControllerConfig(), kernels)
