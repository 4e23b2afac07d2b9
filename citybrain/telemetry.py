"""Prometheus metrics of the field engine (the only prometheus_client importer).

Counters are updated as events happen. Per-signal phases and the stale count
are read from the engine's arrays when Prometheus scrapes, so a 10,000-signal
city costs the control loop nothing for them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .protocol import REJECT_REASONS
from .safety import GUARD_REASONS
from .supervisor import REASONS

__all__ = ["EngineMetrics", "MetricsServer"]

# Loop latency buckets from 50 us to 1 s: a step is ~100 us at 100 signals.
_LATENCY_BUCKETS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0)
MESSAGE_TYPES = ("hello", "detector", "camera", "state", "heartbeat", "other")


class EngineMetrics:
    """The engine's metrics, in a registry of their own (several engines may share a process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.loop_seconds = Histogram("citybrain_loop_seconds", "One control step: detector state to commands sent",
                                      buckets=_LATENCY_BUCKETS_S, registry=r)
        self.received = Counter("citybrain_messages_received_total", "Messages received, by type",
                                ["type"], registry=r)
        self.rejected = Counter("citybrain_messages_rejected_total",
                                "Messages (or the lanes/ids in them) rejected, by reason", ["reason"], registry=r)
        self.commands = Counter("citybrain_signal_commands_total", "Signal display changes commanded", registry=r)
        self.command_messages = Counter("citybrain_command_messages_total", "Command messages sent to gateways",
                                        registry=r)
        self.send_failures = Counter("citybrain_send_failures_total",
                                     "Messages that could not be handed to a gateway (gone, or its queue full)",
                                     registry=r)
        self.steps_overrun = Counter("citybrain_steps_overrun_total",
                                     "Control periods skipped because the loop fell behind", registry=r)
        self.command_rejections = Counter("citybrain_gateway_rejections_total",
                                          "Commands a gateway's conflict guard refused", registry=r)
        self.resyncs = Counter("citybrain_signal_resyncs_total",
                               "Signals whose state the engine took over from a gateway report", registry=r)
        self.commands_refused = Counter(
            "citybrain_commands_refused_total",
            "Signal changes the engine's own conflict monitor stopped before sending, by reason", ["reason"],
            registry=r)
        self.ownership_moves = Counter("citybrain_ownership_moves_total",
                                       "Signals taken over by a new gateway session from an expired one", registry=r)
        self.signals_commanded = Gauge("citybrain_signals_commanded",
                                       "Signals the engine commands: owned by a session that reported their state",
                                       registry=r)
        self.gateways = Gauge("citybrain_gateways", "Gateways heard from within the staleness window", registry=r)
        # Pre-create every label so a scrape shows zeros rather than nothing.
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for kind in MESSAGE_TYPES:
            self.received.labels(kind)
        for reason in GUARD_REASONS:
            self.commands_refused.labels(reason)

    def watch_signals(self, signal_ids: tuple[str, ...], phase: Callable[[], np.ndarray],
                      stage: Callable[[], np.ndarray], stale: Callable[[], np.ndarray]) -> None:
        """Expose per-signal phase and stage, and the stale count, read at scrape time."""
        self.registry.register(_SignalCollector(signal_ids, phase, stage, stale))


    def watch_supervisor(self, supervisor) -> None:
        """Expose the do-no-harm supervisor (a `citybrain.supervisor.Supervisor`), read at scrape time."""
        self.registry.register(_SupervisorCollector(supervisor))

    def watch_preemption(self, preemption) -> None:
        """Expose emergency preemption (a `citybrain.preemption.Preemption`), read at scrape time."""
        self.registry.register(_PreemptionCollector(preemption))


class _SupervisorCollector:
    def __init__(self, supervisor):
        self.supervisor = supervisor

    def describe(self):
        return []

    def collect(self):
        supervisor = self.supervisor
        ids = supervisor.network.signal_ids
        on_plan = GaugeMetricFamily("citybrain_supervised_on_plan",
                                    "Signals handed back to their plan where adaptive control visibly lost, by reason",
                                    labels=["reason"])
        signals = GaugeMetricFamily("citybrain_signal_on_plan", "1 for each signal the supervisor handed back now",
                                    labels=["signal", "reason"])
        for code, reason in enumerate(REASONS[1:], start=1):
            on_plan.add_metric([reason], float(np.count_nonzero(supervisor.on_plan & (supervisor.reason == code))))
        for i in np.flatnonzero(supervisor.on_plan).tolist():
            signals.add_metric([ids[i], REASONS[supervisor.reason[i]]], 1.0)
        yield on_plan
        yield signals
        yield CounterMetricFamily("citybrain_supervisor_handovers", "Signals handed back to their plan",
                                  value=float(supervisor.handovers.sum()))
        yield CounterMetricFamily("citybrain_supervisor_plan_seconds", "Signal-seconds on the plan by the supervisor",
                                  value=float(supervisor.plan_s.sum()))


class _PreemptionCollector:
    def __init__(self, preemption):
        self.preemption = preemption

    def describe(self):
        return []

    def collect(self):
        preemption = self.preemption
        yield GaugeMetricFamily("citybrain_emergency_vehicles", "Emergency vehicles being tracked",
                                value=len(preemption.tracks))
        yield GaugeMetricFamily("citybrain_preempted_signals",
                                "Signals in preemption entry or dwell for an emergency vehicle",
                                value=float(np.count_nonzero(preemption.state)))
        counts = preemption.counts
        for name, value, text in (
                ("entries", counts.entries, "Signals that entered preemption for a vehicle"),
                ("timeouts", counts.timeouts, "Preemptions released at their maximum presence time"),
                ("stalls", counts.stalls, "Held greens handed back because neither the vehicle nor its queue moved"),
                ("conflicts", counts.conflicts, "Signal-periods where a request waited for a conflicting one"),
                ("unroutable", counts.unroutable, "Sightings with neither a usable route nor destination")):
            yield CounterMetricFamily(f"citybrain_preemption_{name}", text, value=value)


class _SignalCollector:
    def __init__(self, signal_ids, phase, stage, stale):
        self.signal_ids, self.phase, self.stage, self.stale = signal_ids, phase, stage, stale

    def describe(self):
        return []

    def collect(self):
        stale = self.stale()
        yield GaugeMetricFamily("citybrain_stale_intersections",
                                "Signals on their fixed-time fallback because detector data is stale",
                                value=float(np.count_nonzero(stale)))
        phase = GaugeMetricFamily("citybrain_signal_phase", "Green phase shown (local index), or being cleared",
                                  labels=["signal"])
        stage = GaugeMetricFamily("citybrain_signal_stage", "0 green, 1 yellow, 2 all-red", labels=["signal"])
        for sid, p, s in zip(self.signal_ids, self.phase().tolist(), self.stage().tolist()):
            phase.add_metric([sid], p)
            stage.add_metric([sid], s)
        yield phase
        yield stage


class MetricsServer:
    """`/metrics` over HTTP in a daemon thread. Port 0 picks a free port (see `.port`)."""

    def __init__(self, metrics: EngineMetrics, address: str = "127.0.0.1", port: int = 9100):
        self._server, self._thread = start_http_server(port, address, registry=metrics.registry)
        self.port = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
