// citybrain dashboard: the network from its own geometry, the engine's live state
// over Server-Sent Events. No dependencies; window.citybrain exposes the state.
"use strict";

const STAGE_COLOURS = ["#2ecc71", "#f1c40f", "#e74c3c"];   // green, yellow, all-red
const RED = "#e74c3c";
const ACCENT = "#e040fb";

const view = { net: null, live: null, scale: 1, ox: 0, oy: 0, width: 0, height: 0, base: null,
               allApproaches: [], updates: 0, drawMs: 0 };
window.citybrain = view;

const $ = (id) => document.getElementById(id);
const map = $("map");

function toScreen(x, y) {
  return [view.ox + x * view.scale, view.oy - y * view.scale];
}

function fit() {
  const rect = map.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  view.width = rect.width; view.height = rect.height;
  map.width = Math.max(1, Math.round(rect.width * ratio));
  map.height = Math.max(1, Math.round(rect.height * ratio));
  if (!view.net) return;
  const [xmin, ymin, xmax, ymax] = view.net.bounds;
  const pad = 20;
  view.scale = Math.min((rect.width - 2 * pad) / Math.max(xmax - xmin, 1),
                        (rect.height - 2 * pad) / Math.max(ymax - ymin, 1));
  view.ox = pad - xmin * view.scale + (rect.width - 2 * pad - (xmax - xmin) * view.scale) / 2;
  view.oy = rect.height - pad + ymin * view.scale - (rect.height - 2 * pad - (ymax - ymin) * view.scale) / 2;
  drawBase();
  draw();
}

function tracePath(ctx, shape, fromFraction) {
  // The polyline of an edge; with fromFraction, only its last part (the approach to the stop line).
  let start = 0;
  if (fromFraction) {
    let total = 0;
    for (let i = 2; i < shape.length; i += 2) total += Math.hypot(shape[i] - shape[i - 2], shape[i + 1] - shape[i - 1]);
    let run = 0;
    const cut = total * fromFraction;
    for (let i = 2; i < shape.length; i += 2) {
      run += Math.hypot(shape[i] - shape[i - 2], shape[i + 1] - shape[i - 1]);
      if (run >= cut) { start = i - 2; break; }
    }
  }
  const [x0, y0] = toScreen(shape[start], shape[start + 1]);
  ctx.moveTo(x0, y0);
  for (let i = start + 2; i < shape.length; i += 2) {
    const [x, y] = toScreen(shape[i], shape[i + 1]);
    ctx.lineTo(x, y);
  }
}

function drawBase() {
  // Roads never change: drawn once per resize into an offscreen canvas.
  const ratio = window.devicePixelRatio || 1;
  const base = document.createElement("canvas");
  base.width = map.width; base.height = map.height;
  const ctx = base.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.strokeStyle = "#3a4550";
  ctx.lineWidth = Math.max(0.6, Math.min(3, view.scale * 3));
  ctx.lineCap = "round";
  ctx.beginPath();
  for (const shape of view.net.edges) tracePath(ctx, shape);
  ctx.stroke();
  view.base = base;
}

function signalRadius() {
  return Math.max(1.5, Math.min(6, view.scale * 8));
}

function draw() {
  const started = performance.now();
  drawMap();
  view.drawMs = performance.now() - started;
}

function drawMap() {
  const ctx = map.getContext("2d");
  const ratio = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, map.width, map.height);
  if (!view.net) return;
  if (view.base) ctx.drawImage(view.base, 0, 0);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.lineCap = "round";
  const live = view.live;
  const net = view.net;
  const width = Math.max(1.2, Math.min(5, view.scale * 5));

  if (live && live.phase.length) {
    // Queues: each edge's halted vehicles, as width and colour.
    const [queuedEdges, queuedCounts] = live.queue;
    for (let i = 0; i < queuedEdges.length; i++) {
      const edge = queuedEdges[i], count = queuedCounts[i];
      ctx.strokeStyle = `rgba(255, 112, 67, ${Math.min(0.35 + count / 20, 0.95)})`;
      ctx.lineWidth = width + Math.min(count, 30) * Math.max(0.3, view.scale * 0.6);
      ctx.beginPath(); tracePath(ctx, net.edges[edge]); ctx.stroke();
    }
    // Approaches: red, then the current phase's ones in the stage colour.
    ctx.lineWidth = width * 1.4;
    ctx.strokeStyle = RED;
    ctx.beginPath();
    for (let s = 0; s < view.allApproaches.length; s++) {
      for (const edge of view.allApproaches[s]) tracePath(ctx, net.edges[edge], 0.6);
    }
    ctx.stroke();
    for (let stage = 0; stage < 2; stage++) {
      ctx.strokeStyle = STAGE_COLOURS[stage];
      ctx.beginPath();
      for (let s = 0; s < live.phase.length; s++) {
        // Walk clearance (stage 3): the crossings are red, the vehicle greens go on.
        if ((live.stage[s] === 3 ? 0 : live.stage[s]) !== stage) continue;
        for (const edge of net.approaches[s][live.phase[s]] || []) tracePath(ctx, net.edges[edge], 0.6);
      }
      ctx.stroke();
    }
    // Emergency routes ahead of each vehicle.
    ctx.strokeStyle = ACCENT; ctx.globalAlpha = 0.55; ctx.lineWidth = width * 2.2;
    ctx.beginPath();
    for (const ev of live.emergency) for (const edge of ev.route) tracePath(ctx, net.edges[edge]);
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  // Signals: detector health as fill, preemption as a ring.
  const r = signalRadius();
  const stale = new Set(live ? live.stale : []);
  for (let s = 0; s < net.signals.length; s++) {
    const [x, y] = toScreen(net.signals[s][0], net.signals[s][1]);
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = stale.has(s) ? "#ffa726" : "#cfd8dc";
    ctx.fill();
    const preempt = live && live.preempt[s];
    if (preempt) {
      ctx.lineWidth = preempt === 2 ? 3 : 1.8; ctx.strokeStyle = ACCENT;
      ctx.beginPath(); ctx.arc(x, y, r + 3, 0, 2 * Math.PI); ctx.stroke();
    }
  }
  if (live) for (const ev of live.emergency) drawVehicle(ctx, ev);
}

function drawVehicle(ctx, ev) {
  const shape = view.net.edges[ev.edge];
  if (!shape) return;
  let remaining = ev.position_m;
  let point = [shape[shape.length - 2], shape[shape.length - 1]];
  for (let i = 2; i < shape.length; i += 2) {
    const dx = shape[i] - shape[i - 2], dy = shape[i + 1] - shape[i - 1];
    const length = Math.hypot(dx, dy);
    if (remaining <= length) {
      const f = length > 0 ? remaining / length : 0;
      point = [shape[i - 2] + f * dx, shape[i - 1] + f * dy];
      break;
    }
    remaining -= length;
  }
  const [x, y] = toScreen(point[0], point[1]);
  ctx.beginPath(); ctx.arc(x, y, signalRadius() + 3, 0, 2 * Math.PI);
  ctx.fillStyle = "#ff1744"; ctx.fill();
  ctx.lineWidth = 2; ctx.strokeStyle = "#fff"; ctx.stroke();
}

function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function drawSparkline(canvas, values) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, w, h);
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length < 2) return;
  const lo = Math.min(...finite), hi = Math.max(...finite);
  const span = hi - lo || 1;
  ctx.strokeStyle = "#64b5f6"; ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (w - 2) + 1;
    const y = h - 2 - ((v - lo) / span) * (h - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function renderPanel() {
  const live = view.live;
  $("time").textContent = formatTime(live.time_s);
  $("signal-count").textContent = String(view.net.signals.length);
  $("stale-count").textContent = String(live.stale.length);
  $("ev-count").textContent = String(live.emergency.length);
  $("preempt-count").textContent = String(Object.keys(live.preempt).length);
  const kpis = $("kpis");
  const keys = Object.keys(live.kpis);
  if (kpis.dataset.keys !== keys.join(",")) {
    kpis.dataset.keys = keys.join(",");
    kpis.innerHTML = keys.length ? "<h2>headline figures</h2>" : "";
    for (const key of keys) {
      const block = document.createElement("div");
      block.className = "kpi";
      block.innerHTML = `<div class="label"><span></span><span class="value"></span></div><canvas></canvas>`;
      block.querySelector("span").textContent = (view.net.kpi_labels || {})[key] || key;
      block.dataset.key = key;
      kpis.appendChild(block);
    }
  }
  for (const block of kpis.querySelectorAll(".kpi")) {
    const key = block.dataset.key;
    const value = live.kpis[key];
    block.querySelector(".value").textContent = Number.isFinite(value) ? (+value.toFixed(2)).toString() : "–";
    drawSparkline(block.querySelector("canvas"), live.history.map((point) => point[key]));
  }
  const list = $("emergency");
  list.innerHTML = live.emergency.length ? "<h2>emergency vehicles</h2>" : "";
  if (live.emergency.length) {
    const ul = document.createElement("ul");
    const serving = {};
    for (const [signal, vehicle] of Object.entries(live.serving)) (serving[vehicle] ||= []).push(view.net.signal_ids[signal]);
    for (const ev of live.emergency) {
      const li = document.createElement("li");
      const ahead = serving[ev.id] ? `, preempting ${serving[ev.id].join(", ")}` : "";
      li.textContent = `${ev.id}: ${ev.speed_mps.toFixed(1)} m/s, priority ${ev.priority}${ahead}`;
      ul.appendChild(li);
    }
    list.appendChild(ul);
  }
}

function update(live) {
  view.live = live;
  view.updates += 1;
  $("overlay").hidden = live.time_s !== null;
  if (live.time_s === null) $("overlay").textContent = "waiting for the engine's first decision…";
  renderPanel();
  draw();
}

function nearestSignal(px, py) {
  let best = -1, bestDistance = 12 * 12;
  const signals = view.net ? view.net.signals : [];
  for (let s = 0; s < signals.length; s++) {
    const [x, y] = toScreen(signals[s][0], signals[s][1]);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestDistance) { bestDistance = d; best = s; }
  }
  return best;
}

map.addEventListener("mousemove", (event) => {
  const rect = map.getBoundingClientRect();
  const s = nearestSignal(event.clientX - rect.left, event.clientY - rect.top);
  const tip = $("tooltip");
  if (s < 0 || !view.live || !view.live.phase.length) { tip.hidden = true; return; }
  const stage = ["green", "yellow", "all-red", "walk clearance"][view.live.stage[s]];
  const health = view.live.stale.includes(s) ? "on the city's plan (detectors stale or blind, or handed back)" : "live";
  const preempt = view.live.serving[s] ? `\npreempted for ${view.live.serving[s]}` : "";
  tip.textContent = `${view.net.signal_ids[s]}\nphase ${view.live.phase[s]}, ${stage}\n${health}${preempt}`;
  tip.style.left = `${event.clientX - rect.left + 12}px`;
  tip.style.top = `${event.clientY - rect.top + 12}px`;
  tip.hidden = false;
});

async function start() {
  const net = await (await fetch("/api/network")).json();
  view.net = net;
  view.allApproaches = net.approaches.map((phases) => [...new Set(phases.flat())]);
  $("title").textContent = net.title;
  $("signal-count").textContent = String(net.signals.length);
  fit();
  update(await (await fetch("/api/state")).json());
  const status = $("status");
  const events = new EventSource("/api/events");
  events.onopen = () => { status.textContent = "live"; status.className = "status live"; };
  events.onerror = () => { status.textContent = "connection lost, retrying…"; status.className = "status lost"; };
  events.onmessage = (message) => update(JSON.parse(message.data));
}

// Zoom with the wheel around the cursor, pan by dragging; double-click fits the network again.
map.addEventListener("wheel", (event) => {
  event.preventDefault();
  if (!view.net) return;
  const rect = map.getBoundingClientRect();
  const px = event.clientX - rect.left, py = event.clientY - rect.top;
  const factor = Math.exp(-event.deltaY * 0.0015);
  view.ox = px - (px - view.ox) * factor;
  view.oy = py - (py - view.oy) * factor;
  view.scale *= factor;
  drawBase(); draw();
}, { passive: false });
let drag = null;
map.addEventListener("mousedown", (event) => { drag = [event.clientX, event.clientY, view.ox, view.oy]; });
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", (event) => {
  if (!drag) return;
  view.ox = drag[2] + event.clientX - drag[0];
  view.oy = drag[3] + event.clientY - drag[1];
  drawBase(); draw();
});
map.addEventListener("dblclick", fit);
window.addEventListener("resize", fit);
start().catch((error) => { $("overlay").textContent = `could not load the network: ${error}`; });
