"""ZeroMQ transport (the only zmq importer): the engine's serve loop and the gateway's link.

Socket pattern: the engine binds one ROUTER, each gateway connects one DEALER.
- One socket each way carries frames in and commands out, so the engine knows
  which gateway owns which signals and answers exactly that peer.
- Nothing is dropped silently. DEALER->ROUTER is a queue, not PUB/SUB: a slow
  engine applies back-pressure (the gateway's send fails and is counted, it does
  not vanish). ROUTER_MANDATORY makes a command to a vanished gateway an error
  the engine counts, instead of ZeroMQ's default silent drop.
- The gateway sets IMMEDIATE, so while no engine is connected its sends fail at
  once (it then runs its local plan) rather than queueing stale frames for an
  engine that may come back minutes later.
- ROUTER_HANDOVER: a gateway that reconnects under the same routing id takes
  it over at once; its hello starts a new session, whose commands carry the
  new session number, so nothing meant for the old session is taken for its own.
- ROUTER fair-queues its peers: one flooding gateway cannot starve the others
  at the socket; the engine's per-sender rate limit does the rest.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import zmq

from .field import FieldEngine

__all__ = ["serve_loop", "GatewayLink"]

log = logging.getLogger(__name__)

_HWM = 10_000           # messages queued per peer before back-pressure
_POLL_S = 0.05          # longest sleep of the loop, so shutdown is prompt


def serve_loop(field: FieldEngine, address: str, stop: threading.Event,
               on_bound: Callable[[str], None] | None = None) -> None:
    """Bind a ROUTER at `address` and run the engine until `stop` is set.
    `on_bound` gets the endpoint actually bound (`tcp://127.0.0.1:*` picks a free port).

    wall clock: step every period; between steps, handle messages as they come.
    frames clock: step as soon as a detector frame reaches the next period.
    Message handling yields to a due step, so a flood cannot delay control."""
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # A gateway reconnecting under its routing id takes the id over at once (the
    # default keeps the dead connection and silently drops the new one's messages).
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.RCVHWM, _HWM)
    sock.setsockopt(zmq.SNDHWM, _HWM)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind(address)
        if on_bound:
            on_bound(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        _loop(field, sock, stop)
    finally:
        sock.close(0)
        context.term()


def _loop(field: FieldEngine, sock: zmq.Socket, stop: threading.Event) -> None:
    metrics = field.metrics
    period_s = field.config.period_s
    wall_clock = field.config.clock == "wall"
    next_tick = time.monotonic()
    while not stop.is_set():
        mono = time.monotonic()
        timeout_s = min(max(next_tick - mono, 0.0), _POLL_S) if wall_clock else _POLL_S
        if sock.poll(timeout_s * 1000):
            deadline = time.monotonic() + period_s / 2
            while True:
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                mono = time.monotonic()
                if len(parts) != 2:
                    replies = field.refuse(parts[0], "malformed", f"{len(parts) - 1}-part message; send one part")
                else:
                    replies = field.receive(parts[0], parts[1], time.time(), mono)
                _send(sock, field, replies)
                if not wall_clock and field.step_due(time.time()):
                    _step(field, sock)
                if mono > deadline or (wall_clock and mono >= next_tick):
                    break
        if wall_clock and time.monotonic() >= next_tick:
            _step(field, sock)
            next_tick += period_s
            behind = time.monotonic() - next_tick
            if behind > 0:
                skipped = int(behind // period_s) + 1
                metrics.steps_overrun.inc(skipped)
                next_tick += skipped * period_s
        metrics.gateways.set(field.gateways_alive(time.monotonic()))


def _step(field: FieldEngine, sock: zmq.Socket) -> None:
    started = time.perf_counter()
    _send(sock, field, field.step(time.time()))
    field.metrics.loop_seconds.observe(time.perf_counter() - started)


def _send(sock: zmq.Socket, field: FieldEngine, messages: list[tuple[bytes, bytes]]) -> None:
    for recipient, data in messages:
        try:
            sock.send_multipart([recipient, data], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            field.metrics.send_failures.inc()       # the gateway's queue is full: it is not reading
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            field.metrics.send_failures.inc()       # the gateway disconnected
            field.forget(recipient)


class GatewayLink:
    """The gateway's end: one DEALER connected to the engine."""

    def __init__(self, address: str, context: zmq.Context | None = None):
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, _HWM)
        self.sock.setsockopt(zmq.RCVHWM, _HWM)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self.sock.connect(address)
        self.address = address

    def send(self, data: bytes) -> bool:
        """False when no engine is connected or its queue is full."""
        try:
            self.sock.send(data, zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False

    def receive(self, timeout_s: float) -> bytes | None:
        if timeout_s > 0 and not self.sock.poll(timeout_s * 1000):
            return None
        try:
            return self.sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None

    def close(self) -> None:
        self.sock.close(0)
        if self._own_context:
            self.context.term()
