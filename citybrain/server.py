"""`citybrain serve`: the engine as a long-running service for field gateways."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import SignalTiming
from .controllers import make_controller
from .engine import Engine
from .field import FieldConfig, FieldEngine
from .frame import DetectorFrame
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
    field: FieldConfig = field(default_factory=FieldConfig)


def serve(network: Network, options: ServeOptions, stop: threading.Event,
          on_ready: Callable[[str, int | None], None] | None = None) -> FieldEngine:
    """Serve until `stop` is set; `on_ready(endpoint, metrics_port)` once listening.
    Returns the engine (its metrics hold the run's counts)."""
    timing = SignalTiming(control_period_s=options.field.period_s)
    _warm_up(network, options.controller, timing)
    engine = FieldEngine(network, make_controller(options.controller, network), timing, options.field)
    metrics_server = None
    if options.metrics_port is not None:
        metrics_server = MetricsServer(engine.metrics, options.metrics_address, options.metrics_port)

    def bound(endpoint: str) -> None:
        if on_ready:
            on_ready(endpoint, metrics_server.port if metrics_server else None)

    try:
        serve_loop(engine, options.bind, stop, bound)
    finally:
        if metrics_server:
            metrics_server.close()
    return engine


def _warm_up(network: Network, controller: str, timing: SignalTiming) -> None:
    """Run two steps on a throwaway engine so JIT loading is done before the first frame."""
    engine = Engine(network, make_controller(controller, network), timing)
    zeros = np.zeros(network.n_lanes)
    for _ in range(2):
        engine.step(DetectorFrame(0.0, zeros, zeros, zeros), np.zeros(network.n_signals, dtype=bool))
