"""The operators' dashboard: a web page drawing the network and the engine's
live state (the only aiohttp importer).

aiohttp because it is an asyncio HTTP server with streaming responses
(Server-Sent Events) built in, needs no separate ASGI server, and runs on its
own event loop in a daemon thread beside our synchronous control loop. Every
asset ships in `citybrain/web/`: no CDN, no map tiles.

Endpoints
- `/`                the page (`web/index.html`, `app.js`, `style.css`)
- `/api/network`     geometry and per-phase approaches, built on the first request
- `/api/state`       the latest live state as JSON (for other tools)
- `/api/events`      the same as Server-Sent Events, whenever it changes
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from importlib import resources

import numpy as np

from aiohttp import web

from .live import KPI_LABELS, LiveView
from .network import Network, load_geometry

__all__ = ["DashboardServer"]

log = logging.getLogger(__name__)

_POLL_S = 0.1          # how often a stream checks for a new snapshot
_KEEPALIVE_S = 15.0    # a comment line on idle streams, so proxies keep them open


class DashboardServer:
    """Serves `live` on http://address:port/ from a daemon thread. Port 0 picks a free
    port (see `.port` once constructed). `close()` stops it and ends every stream."""

    def __init__(self, live: LiveView, address: str = "127.0.0.1", port: int = 8080, title: str = "citybrain"):
        self.live = live
        self.title = title
        self.clients = 0
        self._geometry: bytes | None = None
        self._geometry_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(address, port, started, failure),
                                        name="citybrain-dashboard", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    # -- the server thread -------------------------------------------------
    def _run(self, address: str, port: int, started: threading.Event, failure: list) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(address, port, started))
        except BaseException as exc:  # reported to the constructor if it happens while starting
            failure.append(exc)
            started.set()

    async def _serve(self, address: str, port: int, started: threading.Event) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.add_routes([web.get("/", self._index), web.get("/app.js", self._asset), web.get("/style.css", self._asset),
                        web.get("/api/network", self._network), web.get("/api/state", self._state),
                        web.get("/api/events", self._events)])
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, address, port)
        await site.start()
        self.address, self.port = runner.addresses[0][:2]
        started.set()
        await self._stopping.wait()
        await runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        page = _asset_text("index.html").replace("{{title}}", self.title)
        return web.Response(text=page, content_type="text/html")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.path.lstrip("/")
        kind = "application/javascript" if name.endswith(".js") else "text/css"
        return web.Response(text=_asset_text(name), content_type=kind)

    async def _network(self, request: web.Request) -> web.Response:
        # Parsing a large net takes seconds: off the event loop, once.
        body = await asyncio.get_running_loop().run_in_executor(None, self._geometry_json)
        return web.Response(body=body, content_type="application/json")

    async def _state(self, request: web.Request) -> web.Response:
        _, body = self.live.snapshot_json()
        return web.Response(body=body, content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        self.clients += 1
        sent, idle = -1, 0.0
        try:
            while not self._stopping.is_set():
                if self.live.version != sent:
                    sent, data = self.live.snapshot_json()
                    await response.write(b"data: " + data + b"\n\n")
                    idle = 0.0
                elif idle >= _KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    idle = 0.0
                await asyncio.sleep(_POLL_S)
                idle += _POLL_S
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the browser went away: this stream ends, nothing is kept for it
        finally:
            self.clients -= 1
        return response

    def _geometry_json(self) -> bytes:
        with self._geometry_lock:
            if self._geometry is None:
                network = self.live.network
                geometry = load_geometry(network)
                geometry.update(signal_ids=list(network.signal_ids), approaches=_approaches(network),
                                kpi_labels=KPI_LABELS, title=self.title)
                self._geometry = _compact(geometry).encode()
            return self._geometry


def _compact(data) -> str:
    return json.dumps(data, separators=(",", ":"))


def _asset_text(name: str) -> str:
    return resources.files("citybrain").joinpath("web", name).read_text()


def _approaches(network: Network) -> list[list[list[int]]]:
    """For each signal and local phase, the approach edges of its green movements."""
    per_signal: list[list[list[int]]] = []
    edge_of = network.lane_edge[network.move_in_lane]
    # Movements are stored signal by signal.
    bounds = np.searchsorted(network.move_signal, np.arange(network.n_signals + 1))
    for signal in range(network.n_signals):
        moves = np.arange(bounds[signal], bounds[signal + 1])
        phases = []
        for phase in network.phases_of(signal):
            start = network.phase_link_ptr[phase]
            level = network.phase_green_level[start:start + network.signal_n_links[signal]]
            green = moves[level[network.move_link[moves]] > 0]
            phases.append(sorted({int(e) for e in edge_of[green] if e >= 0}))
        per_signal.append(phases)
    return per_signal
