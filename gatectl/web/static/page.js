// The status page: JSON from /api/status, pictures from /live/<camera>. Every text from the
// device goes in with textContent, never as HTML.
"use strict";

let frameMs = 500;
let tick = 0;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function cameras(list) {
  const box = document.getElementById("cameras");
  for (const cam of list) {
    let div = document.getElementById("cam-" + cam.name);
    if (!div) {
      div = el("div", null, "camera");
      div.id = "cam-" + cam.name;
      div.appendChild(el("h3", cam.name));
      const img = el("img");
      img.alt = "live view of " + cam.name;
      img.dataset.src = cam.live;
      div.appendChild(img);
      div.appendChild(el("ul"));
      box.appendChild(div);
    }
    const ul = div.querySelector("ul");
    ul.replaceChildren(...cam.marks.map((m) => el("li", m.label + " (" + m.what + ")")));
  }
}

function states(s) {
  const t = document.getElementById("states");
  t.replaceChildren(...Object.entries(s).map(([k, v]) => row([k, v])));
}

function events(list) {
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...list.map((e) => {
    let snap = "";
    if (e.snapshot) {
      const a = el("a"); a.href = e.snapshot;
      const img = el("img"); img.src = e.snapshot; img.alt = "snapshot";
      a.appendChild(img); snap = a;
    }
    const who = e.resident_id !== null ? "resident #" + e.resident_id
      : e.watchlist_id !== null ? "watchlist #" + e.watchlist_id : "";
    const tr = row([new Date(e.ts * 1000).toLocaleString(), e.gate, e.kind, e.decision,
                    e.reason, who, snap]);
    tr.className = "event";
    tr.dataset.id = e.id;
    return tr;
  }));
}

function health(h) {
  const box = document.getElementById("health");
  const items = [];
  for (const [name, c] of Object.entries(h.cameras || {}))
    items.push(["camera " + name, c.state + ", " + (c.fps || 0).toFixed(1) + " fps", c.state === "running"]);
  for (const [name, b] of Object.entries(h.boards || {}))
    items.push(["board " + name, b.state + (b.last_error ? ": " + b.last_error : ""), b.state === "online"]);
  if (h.sync) {
    items.push(["broker", h.sync.connected ? "connected" : "disconnected", h.sync.connected]);
    const o = h.sync.outbox || {};
    items.push(["outbox", (o.pending || 0) + " pending, oldest " + (o.oldest_age_s || 0) + " s", true]);
  }
  items.push(["disk free", h.disk_free_mb + " MB", h.disk_free_mb > 200]);
  if (h.cpu_percent !== undefined) items.push(["CPU", h.cpu_percent + " %", h.cpu_percent < 90]);
  if (h.temperature_c) for (const [zone, t] of Object.entries(h.temperature_c))
    items.push(["temperature " + zone, t + " °C", t < 80]);
  items.push(["store", h.store_failing ? h.store_failing : "ok", !h.store_failing]);
  const table = el("table");
  table.replaceChildren(...items.map(([k, v, good]) => {
    const tr = row([k, ""]); tr.lastChild.appendChild(el("span", v, good ? "ok" : "bad")); return tr;
  }));
  const pre = el("pre", JSON.stringify(h, null, 1));
  box.replaceChildren(table, pre);
}

async function refresh() {
  try {
    const r = await fetch("/api/status", {cache: "no-store"});
    if (r.status === 401) { location.href = "/login"; return; }
    const s = await r.json();
    frameMs = s.frame_interval_ms;
    document.getElementById("logout").hidden = !s.protected;
    const ann = document.getElementById("announcement");
    ann.hidden = !s.announcement;
    ann.textContent = s.announcement || "";
    cameras(s.cameras); states(s.states); events(s.events); health(s.health);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("updated").textContent = "no answer from the device";
  }
}

function frames() {
  tick += 1;
  for (const img of document.querySelectorAll(".camera img"))
    img.src = img.dataset.src + "?n=" + tick;
  setTimeout(frames, frameMs);
}

refresh();
setInterval(refresh, 2000);
frames();
