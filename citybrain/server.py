"""`citybrain serve`: the engine as a long-running service for field gateways."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import PreemptionConfig, SignalTiming, SupervisorConfig
from .controllers import make_controller
from .engine import Engine
from .field import FieldConfig, FieldEngine
from .dashboard import DashboardServer
from .frame import DetectorFrame, EmergencyVehicle
from .live import LiveView
from .network import Network
from .telemetry import MetricsServer
from .wire import serve_loop

__all__ = ["ServeOptions", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    bind: str = "tcp://127.0.0.1:5555"
    controller: str = "citybrain"
    metrics_address: str = "127.0.0.1"
    metrics_port: int | None = 9100      # None: no /metrics endpoint; 0: any free port
    dashboard_address: str = "127.0.0.1"
    dashboard_port: int | None = None    # None: no dashboard; 0: any free port
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    field: FieldConfig = field(default_factory=FieldConfig)
    min_all_red_s: float = 0.0           # SignalTiming.min_all_red_s


def serve(network: Network, options: ServeOptions, stop: threading.Event,
          on_ready: Callable[[str, int | None, str | None], None] | None = None) -> FieldEngine:
    """Serve until `stop` is set; `on_ready(endpoint, metrics_port, dashboard_url)` once
    listening. Returns the engine (its metrics hold the run's counts)."""
    timing = SignalTiming(control_period_s=options.field.period_s, min_all_red_s=options.min_all_red_s)
    network = network.with_min_all_red(options.min_all_red_s)
    _warm_up(network, options.controller, timing, options.preemption)
    engine = FieldEngine(network, make_controller(options.controller, network), timing, options.field,
                         preemption=options.preemption, supervisor=options.supervisor)
    metrics_server = dashboard = None
    if options.metrics_port is not None:
        metrics_server = MetricsServer(engine.metrics, options.metrics_address, options.metrics_port)
    if options.dashboard_port is not None:
        engine.live = LiveView(network)
        dashboard = DashboardServer(engine.live, options.dashboard_address, options.dashboard_port,
                                    f"{network.path.name} / {options.controller}")

    def bound(endpoint: str) -> None:
        if on_ready:
            on_ready(endpoint, metrics_server.port if metrics_server else None, dashboard.url if dashboard else None)

    try:
        serve_loop(engine, options.bind, stop, bound)
    finally:
        if metrics_server:
            metrics_server.close()
        if dashboard:
            dashboard.close()
    return engine


def _warm_up(network: Network, controller: str, timing: SignalTiming, preemption: PreemptionConfig) -> None:
    """Run a few steps on a throwaway engine, one with an emergency vehicle at a
    stop line, so JIT loading is done before the first frame."""
    engine = Engine(network, make_controller(controller, network), timing, preemption=preemption)
    zeros = np.zeros(network.n_lanes)
    stale = np.zeros(network.n_signals, dtype=bool)
    turn = next(iter(engine.preemption.turns), None) if engine.preemption else None
    vehicles = () if turn is None else (EmergencyVehicle("warm-up", turn[0], 0.0, 10.0, turn, -1, 1, 0.0),)
    for emergency in ((), vehicles, ()):
        engine.step(DetectorFrame(0.0, zeros, zeros, zeros, emergency), stale)
