// The operator's web map of the CPN controller. Plain JavaScript + SVG, no library.
// Data: GET /api/v1/topology once, then /api/v1/stream (server-sent events, read with
// fetch so the API token can go in a header) for link, switch, mastership and intent
// changes; GET /api/v1/cluster for the members (the legend of masters) when one moves.
"use strict";

const API = "/api/v1";
const SVGNS = "http://www.w3.org/2000/svg";
const VIEW_W = 1000;
const VIEW_H = 700;
const KINDS = {
  national_hub: { label: "national hub", fill: "#d62728", size: 9 },
  dc_cluster: { label: "data-center cluster", fill: "#1f77b4", size: 7 },
  direct_connection_point: { label: "direct connection point", fill: "#9467bd", size: 6.5 },
  exchange_center: { label: "exchange center", fill: "#ff7f0e", size: 7 },
  city: { label: "city", fill: "#2ca02c", size: 5 },
  switch: { label: "switch", fill: "#5b6b7d", size: 4.5 },
};
// outline colours of the members mastering switches (in the order /cluster lists them)
const MEMBER_COLOURS = ["#0b63c5", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad",
  "#5f3dc4", "#e67700", "#495057", "#d6336c"];

const S = {
  topo: null,
  pos: new Map(), // node name -> [x, y]
  nodeEl: new Map(),
  linkEl: [],
  links: [],
  hostsByNode: new Map(),
  hostNode: new Map(),
  intents: [],
  selectedIntent: null,
  intentsKey: null,
  query: null, // last /paths answer
  pickNext: "src",
  view: { x: 0, y: 0, w: VIEW_W, h: VIEW_H },
  symbolScale: 1,
  circle: null,
  cluster: null, // last /cluster answer (mode, members)
  masters: new Map(), // node name -> member id mastering it, or null
  mastersKey: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, parent = null) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function html(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  const t = Number(x).toFixed(digits);
  return t.includes(".") ? t.replace(/0+$/, "").replace(/\.$/, "") : t;
}

function fmtMbps(x) {
  if (x === null || x === undefined) return "–";
  return x >= 1000 ? `${fmt(x / 1000, 2)} Gbps` : `${fmt(x, 1)} Mbps`;
}

// --- API ----------------------------------------------------------------------------------

function authHeaders(extra = {}) {
  const h = { ...extra };
  const t = $("token").value.trim();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function api(path, opts = {}) {
  // a read that fails in the network (e.g. Chromium's ERR_NETWORK_CHANGED when interfaces
  // come and go, as they do beside Mininet) is tried again; a write is not (not idempotent)
  const tries = (opts.method || "GET") === "GET" ? 3 : 1;
  let r = null;
  for (let i = 0; ; i++) {
    try {
      r = await fetch(API + path, { ...opts, headers: authHeaders(opts.headers || {}) });
      break;
    } catch (err) {
      if (i + 1 >= tries) return { ok: false, status: 0, body: { error: "network", detail: String(err.message || err) } };
      await new Promise((res) => setTimeout(res, 200));
    }
  }
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  return { ok: r.ok, status: r.status, body };
}

function errorText(res) {
  if (res.body && res.body.detail) return `${res.status} ${res.body.error}: ${res.body.detail}`;
  return `HTTP ${res.status}`;
}

// --- layout -------------------------------------------------------------------------------

// Equirectangular projection (longitude scaled by the cosine of the mean latitude), fitted to
// the view. Nodes without coordinates go to the mean of their placed neighbours, the rest on
// a circle (a whole map without coordinates: a short force layout from the circle).
function layout(nodes, links) {
  const pos = new Map();
  const geo = nodes.filter((n) => n.lat !== null && n.lon !== null);
  const nbrs = new Map(nodes.map((n) => [n.name, []]));
  for (const l of links) { nbrs.get(l.a).push(l.b); nbrs.get(l.b).push(l.a); }
  const margin = 40;
  if (geo.length > 0) {
    const lat0 = geo.reduce((s, n) => s + n.lat, 0) / geo.length;
    const k = Math.cos((lat0 * Math.PI) / 180);
    const raw = geo.map((n) => [n.name, n.lon * k, -n.lat]);
    const xs = raw.map((r) => r[1]);
    const ys = raw.map((r) => r[2]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const sc = Math.min((VIEW_W - 2 * margin) / Math.max(x1 - x0, 1e-6),
      (VIEW_H - 2 * margin) / Math.max(y1 - y0, 1e-6));
    const ox = (VIEW_W - sc * (x1 - x0)) / 2;
    const oy = (VIEW_H - sc * (y1 - y0)) / 2;
    for (const [name, x, y] of raw) pos.set(name, [ox + sc * (x - x0), oy + sc * (y - y0)]);
    for (let pass = 0; pass < 20; pass++) {
      let placed = 0;
      for (const n of nodes) {
        if (pos.has(n.name)) continue;
        const p = nbrs.get(n.name).filter((m) => pos.has(m)).map((m) => pos.get(m));
        if (p.length === 0) continue;
        const cx = p.reduce((s, q) => s + q[0], 0) / p.length;
        const cy = p.reduce((s, q) => s + q[1], 0) / p.length;
        const a = (placed + pass) * 2.39996;
        pos.set(n.name, [cx + 9 * Math.cos(a), cy + 9 * Math.sin(a)]);
        placed++;
      }
      if (placed === 0) break;
    }
    const rest = nodes.filter((n) => !pos.has(n.name));
    rest.forEach((n, i) => {
      pos.set(n.name, [margin / 2 + (i % 40) * 12, VIEW_H - margin / 2 - Math.floor(i / 40) * 12]);
    });
  } else {
    const r = Math.min(VIEW_W, VIEW_H) / 2 - margin;
    nodes.forEach((n, i) => {
      const a = (2 * Math.PI * i) / nodes.length;
      pos.set(n.name, [VIEW_W / 2 + r * Math.cos(a), VIEW_H / 2 + r * Math.sin(a)]);
    });
    if (nodes.length <= 400) forceLayout(nodes, links, pos, 120);
  }
  spreadDuplicates(pos);
  return pos;
}

function forceLayout(nodes, links, pos, iterations) {
  const names = nodes.map((n) => n.name);
  const area = VIEW_W * VIEW_H;
  const k = Math.sqrt(area / Math.max(names.length, 1)) * 0.6;
  let temp = VIEW_W / 10;
  for (let it = 0; it < iterations; it++) {
    const disp = new Map(names.map((n) => [n, [0, 0]]));
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const a = pos.get(names[i]);
        const b = pos.get(names[j]);
        let dx = a[0] - b[0];
        let dy = a[1] - b[1];
        const d = Math.max(Math.hypot(dx, dy), 0.01);
        const f = (k * k) / d;
        dx = (dx / d) * f; dy = (dy / d) * f;
        disp.get(names[i])[0] += dx; disp.get(names[i])[1] += dy;
        disp.get(names[j])[0] -= dx; disp.get(names[j])[1] -= dy;
      }
    }
    for (const l of links) {
      const a = pos.get(l.a);
      const b = pos.get(l.b);
      const dx = a[0] - b[0];
      const dy = a[1] - b[1];
      const d = Math.max(Math.hypot(dx, dy), 0.01);
      const f = (d * d) / k;
      disp.get(l.a)[0] -= (dx / d) * f; disp.get(l.a)[1] -= (dy / d) * f;
      disp.get(l.b)[0] += (dx / d) * f; disp.get(l.b)[1] += (dy / d) * f;
    }
    for (const n of names) {
      const [dx, dy] = disp.get(n);
      const d = Math.max(Math.hypot(dx, dy), 0.01);
      const p = pos.get(n);
      p[0] = Math.min(VIEW_W - 20, Math.max(20, p[0] + (dx / d) * Math.min(d, temp)));
      p[1] = Math.min(VIEW_H - 20, Math.max(20, p[1] + (dy / d) * Math.min(d, temp)));
    }
    temp *= 0.96;
  }
}

// Several nodes at the same coordinates (one city, several PoPs): a small ring around it.
function spreadDuplicates(pos) {
  const groups = new Map();
  for (const [name, [x, y]] of pos) {
    const key = `${Math.round(x * 2)},${Math.round(y * 2)}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(name);
  }
  for (const names of groups.values()) {
    if (names.length < 2) continue;
    const [cx, cy] = pos.get(names[0]);
    const r = 2 + 1.2 * Math.sqrt(names.length);
    names.forEach((n, i) => {
      const a = (2 * Math.PI * i) / names.length;
      pos.set(n, [cx + r * Math.cos(a), cy + r * Math.sin(a)]);
    });
  }
}

// --- drawing ------------------------------------------------------------------------------

function symbolPath(kind, s) {
  switch (kind) {
    case "national_hub": { // five-pointed star
      const pts = [];
      for (let i = 0; i < 10; i++) {
        const r = i % 2 === 0 ? s : s * 0.45;
        const a = -Math.PI / 2 + (i * Math.PI) / 5;
        pts.push(`${fmt(r * Math.cos(a), 2)},${fmt(r * Math.sin(a), 2)}`);
      }
      return `M${pts.join("L")}Z`;
    }
    case "dc_cluster": { const h = s * 0.8; return `M${-h},${-h}H${h}V${h}H${-h}Z`; }
    case "direct_connection_point": return `M0,${-s}L${s},0L0,${s}L${-s},0Z`;
    case "exchange_center": {
      const pts = [];
      for (let i = 0; i < 6; i++) {
        const a = (i * Math.PI) / 3;
        pts.push(`${fmt(s * Math.cos(a), 2)},${fmt(s * Math.sin(a), 2)}`);
      }
      return `M${pts.join("L")}Z`;
    }
    default: // city, switch: a circle
      return `M${-s},0A${s},${s} 0 1,0 ${s},0A${s},${s} 0 1,0 ${-s},0Z`;
  }
}

function utilisation(l) {
  const used = Math.max(l.load_mbps || 0, l.reserved_mbps || 0);
  return l.bandwidth_mbps > 0 ? used / l.bandwidth_mbps : 0;
}

function linkColour(u) {
  if (!(u > 0)) return "#7d93ad";
  const hue = 120 * (1 - Math.min(u, 1)); // green -> red
  return `hsl(${hue.toFixed(0)}, 80%, 40%)`;
}

function linkTitle(l) {
  const u = utilisation(l);
  return [`${l.a} — ${l.b}  (link ${l.index})`, l.up ? "up" : "DOWN",
    `latency ${fmt(l.latency_ms)} ms`, `capacity ${fmtMbps(l.bandwidth_mbps)}`,
    `reserved ${fmtMbps(l.reserved_mbps)}`,
    `load ${l.load_mbps === null || l.load_mbps === undefined ? "not measured" : fmtMbps(l.load_mbps)}`,
    `utilisation ${(100 * u).toFixed(1)} %`,
    l.distance_km ? `distance ${fmt(l.distance_km, 0)} km` : null,
    `cost ${fmt(l.cost)}`].filter(Boolean).join("\n");
}

function styleLink(i) {
  const l = S.links[i];
  const e = S.linkEl[i];
  e.setAttribute("data-up", l.up ? "true" : "false");
  e.classList.toggle("down", !l.up);
  e.setAttribute("stroke", linkColour(utilisation(l)));
  e.firstChild.textContent = linkTitle(l);
}

function nodeTitle(n) {
  const sites = (S.topo.compute_sites || []).filter((c) => c.node === n.name);
  const master = S.masters.get(n.name);
  return [`${n.name}${n.label && n.label !== n.name ? ` (${n.label})` : ""}`,
    KINDS[n.kind] ? KINDS[n.kind].label : n.kind, `dpid ${n.dpid}`,
    n.connected ? "switch connected" : "switch not connected",
    clustered() ? (master ? `master ${master}` : "no master") : null,
    n.lat !== null ? `${fmt(n.lat, 2)}°, ${fmt(n.lon, 2)}°` : "no coordinates",
    ...sites.map((c) => `site ${c.id}: ${fmt(c.capacity, 1)} ${c.unit}`)].filter(Boolean).join("\n");
}

// --- masters (several controllers: which member is master of each switch) ---------------

function clustered() {
  return Boolean(S.cluster && S.cluster.mode === "cluster");
}

function memberColour(id) {
  const members = S.cluster ? S.cluster.members.map((m) => m.id) : [];
  const i = members.indexOf(id);
  return i < 0 ? "#868e96" : MEMBER_COLOURS[i % MEMBER_COLOURS.length];
}

// every switch's outline in its master's colour (a controller running alone: no colours)
function styleMasters() {
  const nodes = new Map(S.topo.nodes.map((x) => [x.name, x]));
  for (const [name, g] of S.nodeEl) {
    const master = S.masters.get(name) || null;
    g.setAttribute("data-master", master || "");
    const on = clustered() && master !== null;
    g.classList.toggle("mastered", on);
    if (on) g.style.setProperty("--master", memberColour(master));
    else g.style.removeProperty("--master");
    const n = nodes.get(name);
    if (n) g.querySelector("title").textContent = nodeTitle(n);
  }
  legendMasters();
}

function legendMasters() {
  const box = $("masters");
  box.replaceChildren();
  box.hidden = !clustered();
  if (!clustered()) return;
  box.append(html("div", "masters", { class: "head" }));
  for (const m of S.cluster.members) {
    const d = html("div", null, { "data-member": m.id });
    const s = el("svg", { width: 14, height: 14, viewBox: "-7 -7 14 14" });
    el("circle", { r: 5, fill: "#fff", stroke: memberColour(m.id), "stroke-width": 3 }, s);
    const count = [...S.masters.values()].filter((x) => x === m.id).length;
    const notes = [m.self ? "answering" : null, m.alive ? null : "down"].filter(Boolean);
    d.append(s, ` ${m.id} · ${count} switch${count === 1 ? "" : "es"}${notes.length ? ` (${notes.join(", ")})` : ""}`);
    box.append(d);
  }
  box.append(html("div", "plain outline: no master", { class: "muted" }));
}

async function refreshCluster() {
  const res = await api("/cluster");
  if (res.ok && res.body) { S.cluster = res.body; styleMasters(); }
}

// at most once a second: mastership moves in bursts (a member dies, its switches move)
const clusterPoll = { pending: null, last: 0 };

function scheduleCluster() {
  if (clusterPoll.pending) return;
  const wait = Math.max(0, 1000 - (Date.now() - clusterPoll.last));
  clusterPoll.pending = setTimeout(() => {
    clusterPoll.pending = null; clusterPoll.last = Date.now(); refreshCluster();
  }, wait);
}

function draw() {
  const t = S.topo;
  const big = t.nodes.length > 150;
  S.symbolScale = big ? 0.55 : 1;
  S.pos = layout(t.nodes, t.links);
  const gLinks = $("links");
  const gNodes = $("nodes");
  const gLabels = $("labels");
  gLinks.replaceChildren(); gNodes.replaceChildren(); gLabels.replaceChildren();
  $("overlay").replaceChildren();
  S.links = t.links.map((l) => ({ ...l }));
  S.linkEl = S.links.map((l) => {
    const [x1, y1] = S.pos.get(l.a);
    const [x2, y2] = S.pos.get(l.b);
    const e = el("line", { class: "link", "data-link": l.index, "data-a": l.a, "data-b": l.b,
      x1: fmt(x1, 2), y1: fmt(y1, 2), x2: fmt(x2, 2), y2: fmt(y2, 2),
      "stroke-width": big ? 1.1 : 2.2, "vector-effect": "non-scaling-stroke" }, gLinks);
    el("title", {}, e);
    return e;
  });
  S.links.forEach((_, i) => styleLink(i));
  const siteNodes = new Set((t.compute_sites || []).map((c) => c.node));
  for (const n of t.nodes) {
    const [x, y] = S.pos.get(n.name);
    const kind = KINDS[n.kind] ? n.kind : "switch";
    const g = el("g", { class: `node kind-${kind}`, "data-node": n.name, "data-kind": n.kind,
      "data-connected": n.connected ? "true" : "false", "data-master": n.master || "" }, gNodes);
    g.dataset.x = x; g.dataset.y = y;
    el("path", { class: "sym", d: symbolPath(kind, KINDS[kind].size), fill: KINDS[kind].fill,
      "stroke-width": 1 }, g);
    if (siteNodes.has(n.name)) el("rect", { class: "site-badge", x: 4, y: -10, width: 6, height: 6 }, g);
    el("title", {}, g).textContent = nodeTitle(n);
    g.addEventListener("click", (ev) => { ev.stopPropagation(); pickNode(n.name); });
    S.nodeEl.set(n.name, g);
    const lab = el("text", { class: "label", "data-label": n.name, x: fmt(x, 1), y: fmt(y, 1),
      dx: "0.7em", dy: "-0.5em" }, gLabels);
    lab.textContent = n.label && n.label.length < 22 ? n.label : n.name;
  }
  rescale();
  $("map").dataset.nodes = String(t.nodes.length);
  $("map").dataset.links = String(t.links.length);
}

// symbols keep roughly their screen size when zooming
function rescale() {
  const z = VIEW_W / S.view.w;
  const k = S.symbolScale / Math.sqrt(z);
  for (const g of S.nodeEl.values()) {
    g.setAttribute("transform", `translate(${g.dataset.x},${g.dataset.y}) scale(${k.toFixed(3)})`);
  }
  // 11 screen pixels: user units per pixel from the drawn size (preserveAspectRatio meet)
  const r = $("map").getBoundingClientRect();
  const upp = r.width > 0 && r.height > 0 ? Math.max(S.view.w / r.width, S.view.h / r.height) : 1 / z;
  $("labels").style.fontSize = `${(11 * upp).toFixed(3)}px`;
  // a big map shows its labels only once zoomed in far enough to read them
  $("labels").style.display = S.symbolScale < 1 && z < 4 ? "none" : "";
  for (const r of $("overlay").children) r.setAttribute("stroke-width", (7 / z).toFixed(2));
  $("map").setAttribute("viewBox", `${S.view.x} ${S.view.y} ${S.view.w} ${S.view.h}`);
}

function legend() {
  const box = $("legend");
  box.replaceChildren();
  const kinds = new Set(S.topo.nodes.map((n) => n.kind));
  for (const [kind, k] of Object.entries(KINDS)) {
    if (!kinds.has(kind)) continue;
    const d = html("div");
    const s = el("svg", { width: 18, height: 16, viewBox: "-9 -8 18 16" });
    el("path", { d: symbolPath(kind, Math.min(k.size, 7)), fill: k.fill, stroke: "#1d2430" }, s);
    d.append(s, ` ${k.label}`);
    box.append(d);
  }
  const rows = [["#7d93ad", "", "link, idle"], [linkColour(0.5), "", "50 % used"],
    [linkColour(1), "", "full"], ["#9aa1ab", "5 4", "down"], ["#e0007a", "", "path"],
    ["#7b2ff7", "", "selected intent"]];
  for (const [c, dash, text] of rows) {
    const d = html("div");
    const s = el("svg", { width: 22, height: 10 });
    el("line", { x1: 1, y1: 5, x2: 21, y2: 5, stroke: c, "stroke-width": 3, "stroke-dasharray": dash || "none" }, s);
    d.append(s, ` ${text}`);
    box.append(d);
  }
  box.append(html("div", "faded symbol: switch not connected · ■ compute site", { class: "wide" }));
}

// --- zoom and pan -------------------------------------------------------------------------

function setupZoom() {
  const svg = $("map");
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect();
    const f = ev.deltaY < 0 ? 1 / 1.2 : 1.2;
    const w = Math.min(Math.max(S.view.w * f, VIEW_W / 40), VIEW_W * 3);
    const fx = (ev.clientX - r.left) / r.width;
    const fy = (ev.clientY - r.top) / r.height;
    const h = (w * S.view.h) / S.view.w;
    S.view.x += (S.view.w - w) * fx;
    S.view.y += (S.view.h - h) * fy;
    S.view.w = w; S.view.h = h;
    rescale();
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (ev) => {
    if (ev.target.closest(".node")) return;
    drag = { x: ev.clientX, y: ev.clientY, vx: S.view.x, vy: S.view.y };
    svg.classList.add("dragging");
  });
  window.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    const k = Math.max(S.view.w / r.width, S.view.h / r.height);
    S.view.x = drag.vx - (ev.clientX - drag.x) * k;
    S.view.y = drag.vy - (ev.clientY - drag.y) * k;
    rescale();
  });
  window.addEventListener("pointerup", () => { drag = null; svg.classList.remove("dragging"); });
}

// --- paths --------------------------------------------------------------------------------

function pickNode(name) {
  $(S.pickNext).value = name;
  S.pickNext = S.pickNext === "src" ? "dst" : "src";
  markPicked();
  if ($("src").value && $("dst").value && S.pickNext === "src") findPath();
}

function markPicked() {
  for (const g of S.nodeEl.values()) g.classList.remove("picked");
  for (const id of ["src", "dst"]) {
    const n = S.hostNode.get($(id).value) || $(id).value;
    const g = S.nodeEl.get(n);
    if (g) g.classList.add("picked");
  }
}

function drawRoute(nodes, cls, attrs) {
  const pts = nodes.filter((n) => S.pos.has(n)).map((n) => S.pos.get(n).map((v) => fmt(v, 2)).join(","));
  const z = VIEW_W / S.view.w;
  return el("polyline", { class: cls, points: pts.join(" "), "stroke-width": (7 / z).toFixed(2),
    "data-nodes": nodes.join(","), ...attrs }, $("overlay"));
}

// the link elements along a node sequence (the first link between each pair)
function linksAlong(nodes) {
  const out = [];
  for (let i = 0; i + 1 < nodes.length; i++) {
    const l = S.links.find((x) => (x.a === nodes[i] && x.b === nodes[i + 1])
      || (x.b === nodes[i] && x.a === nodes[i + 1]));
    if (l) out.push(l.index);
  }
  return out;
}

function clearRoute() {
  const old = $("route");
  if (old) old.remove();
  for (const e of document.querySelectorAll(".link.on-route")) e.classList.remove("on-route");
}

function showRoute(nodes) {
  clearRoute();
  drawRoute(nodes, "route", { id: "route" });
  for (const i of linksAlong(nodes)) S.linkEl[i].classList.add("on-route");
}

async function findPath(ev) {
  if (ev) ev.preventDefault();
  const src = $("src").value.trim();
  const dst = $("dst").value.trim();
  const out = $("path-result");
  S.query = null;
  $("install").disabled = true;
  clearRoute();
  if (!src || !dst) { out.textContent = "pick two nodes"; return; }
  const q = new URLSearchParams({ src, dst });
  if ($("max-latency").value) q.set("max_latency_ms", $("max-latency").value);
  if ($("min-bw").value) q.set("min_bandwidth_mbps", $("min-bw").value);
  out.className = "result";
  out.textContent = "computing…";
  const res = await api(`/paths?${q}`);
  out.dataset.status = String(res.status);
  if (!res.ok) {
    out.className = "result error";
    out.textContent = errorText(res);
    return;
  }
  const p = res.body.paths[0];
  S.query = { src, dst, path: p };
  showRoute(p.nodes);
  out.textContent = `${p.nodes.join(" → ")}\nlatency ${fmt(p.latency_ms)} ms · cost ${fmt(p.cost)} · `
    + `${p.hops} hops · bottleneck ${fmtMbps(p.bottleneck_mbps)}`;
  $("install").disabled = false;
}

// intents are between hosts: a node stands for its first host
function hostFor(name) {
  if (S.hostNode.has(name)) return name;
  const hs = S.hostsByNode.get(name);
  return hs && hs.length ? hs[0] : null;
}

async function installIntent() {
  const out = $("path-result");
  if (!S.query) return;
  const src = hostFor(S.query.src);
  const dst = hostFor(S.query.dst);
  const bound = parseFloat($("max-latency").value);
  if (!src || !dst) { out.className = "result error"; out.textContent = "no host at one of the ends"; return; }
  if (!(bound > 0)) { out.className = "result error"; out.textContent = "set a max latency for the intent"; return; }
  if (!$("token").value.trim()) { out.className = "result error"; out.textContent = "type the API token (top right)"; return; }
  const body = { src, dst, max_latency_ms: bound };
  const bw = parseFloat($("min-bw").value);
  if (bw > 0) body.min_bandwidth_mbps = bw;
  $("install").disabled = true;
  const res = await api("/intents", { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } });
  if (!res.ok) {
    out.className = "result error";
    out.textContent = errorText(res);
    $("install").disabled = false;
    return;
  }
  out.className = "result";
  out.textContent = `intent ${res.body.id} (${res.body.name}): ${res.body.state}`
    + (res.body.reason ? ` — ${res.body.reason}` : "");
  out.dataset.intent = String(res.body.id);
  await refreshIntents();
  selectIntent(res.body.id);
}

// --- intents ------------------------------------------------------------------------------

async function refreshIntents() {
  const res = await api("/intents");
  if (res.ok) { S.intents = res.body; S.intentsKey = null; renderIntents(); }
}

function renderIntents() {
  const tb = $("intents").tBodies[0];
  tb.replaceChildren();
  $("intent-count").textContent = `(${S.intents.length})`;
  for (const it of S.intents) {
    const tr = html("tr", null, { "data-intent": it.id, "data-state": it.state });
    tr.append(html("td", it.id), html("td", it.name), html("td", `${it.src} → ${it.dst}`));
    const st = html("td");
    st.append(html("span", it.state, { class: `state state-${it.state}`, title: it.reason || "" }));
    // SLA monitoring: the measured latency of the path is over the bound
    if (it.sla === "violated") {
      st.append(" ", html("span", "SLA", { class: "state sla-violated",
        title: `measured ${fmt(it.measured_ms, 2)} ms over the bound ${fmt(it.max_latency_ms)} ms` }));
    }
    tr.dataset.sla = it.sla || "";
    tr.append(st, html("td", it.latency_ms !== null && it.latency_ms !== undefined ? fmt(it.latency_ms, 2) : "–"));
    if (it.id === S.selectedIntent) tr.classList.add("selected");
    tr.addEventListener("click", () => selectIntent(it.id === S.selectedIntent ? null : it.id));
    tb.append(tr);
  }
  highlightIntent();
}

function selectIntent(id) {
  S.selectedIntent = id;
  for (const tr of $("intents").tBodies[0].rows) {
    tr.classList.toggle("selected", Number(tr.dataset.intent) === id);
  }
  highlightIntent();
}

function highlightIntent() {
  for (const r of document.querySelectorAll(".route.intent")) r.remove();
  for (const e of document.querySelectorAll(".link.on-intent")) e.classList.remove("on-intent");
  const box = $("intent-detail");
  const it = S.intents.find((x) => x.id === S.selectedIntent);
  if (!it) { box.textContent = ""; return; }
  const lines = [`intent ${it.id} ${it.name}: ${it.state}${it.reason ? ` — ${it.reason}` : ""}`,
    `bound ${fmt(it.max_latency_ms)} ms`];
  if (it.path) {
    drawRoute(it.path, "route intent", { "data-intent": it.id });
    for (const i of linksAlong(it.path)) S.linkEl[i].classList.add("on-intent");
    lines.push(`${it.path.join(" → ")}`, `latency ${fmt(it.latency_ms)} ms · cost ${fmt(it.cost)}`);
  }
  if (it.sla) lines.push(`SLA ${it.sla}: measured ${fmt(it.measured_ms, 2)} ms`);
  const n = it.reroutes !== undefined ? it.reroutes : (it.history || []).length;
  if (n) lines.push(`${n} path change(s)`);
  box.textContent = lines.join("\n");
}

// --- latency circles ----------------------------------------------------------------------

async function showCircle(tier) {
  const center = $("circle-center").value;
  const out = $("circle-result");
  const res = await api(`/latency-circles?${new URLSearchParams({ center, max_latency_ms: tier })}`);
  if (!res.ok) { out.className = "result error"; out.textContent = errorText(res); return; }
  const c = res.body.circles[0];
  const inside = new Map(c.tiers[0].nodes.map((n) => [n.name, n.latency_ms]));
  S.circle = { center, tier, inside };
  $("map").classList.add("circle-mode");
  for (const [name, g] of S.nodeEl) {
    g.classList.toggle("in-circle", inside.has(name));
    g.classList.toggle("center", name === c.center);
  }
  for (const b of document.querySelectorAll("#tiers button[data-tier]")) {
    b.classList.toggle("active", Number(b.dataset.tier) === tier);
  }
  const sites = (S.topo.compute_sites || []).filter((s) => inside.has(s.node));
  out.className = "result";
  out.dataset.count = String(inside.size);
  out.textContent = `${inside.size} nodes within ${tier} ms of ${c.center}`
    + `\ncompute sites inside: ${sites.length ? sites.map((s) => `${s.id} (${fmt(inside.get(s.node), 2)} ms)`).join(", ") : "none"}`;
}

function clearCircle() {
  S.circle = null;
  $("map").classList.remove("circle-mode");
  for (const g of S.nodeEl.values()) g.classList.remove("in-circle", "center");
  for (const b of document.querySelectorAll("#tiers button")) b.classList.remove("active");
  $("circle-result").textContent = "";
}

// --- compute sites ------------------------------------------------------------------------

function renderSites(sites) {
  const tb = $("sites").tBodies[0];
  tb.replaceChildren();
  $("site-count").textContent = `(${sites.length})`;
  for (const s of sites) {
    const free = s.free_capacity === null || s.free_capacity === undefined ? s.capacity : s.free_capacity;
    const used = Math.max(0, s.capacity - free);
    const tr = html("tr", null, { "data-site": s.id, "data-state": s.state || "up" });
    if (s.state && s.state !== "up") tr.classList.add(`site-${s.state}`);
    const bar = html("span", null, { class: "bar" });
    const fill = html("i");
    fill.style.width = `${Math.min(100, (100 * used) / (s.capacity || 1)).toFixed(0)}%`;
    bar.append(fill);
    const cap = html("td");
    cap.append(bar, `${fmt(used, 1)} / ${fmt(s.capacity, 1)} ${s.unit || ""}`);
    // live metrics (CATS levels): the one score, or stale when older than three intervals
    const m = s.metrics;
    const stale = Boolean(m && m.stale);
    const score = m && m.levels ? m.levels.score : null;
    tr.dataset.stale = String(stale);
    if (score !== null) tr.dataset.score = String(score);
    if (stale) tr.classList.add("site-stale");
    const scoreCell = html("td", !m ? "—" : stale ? (score === null ? "stale" : `stale (${fmt(score, 2)})`) : fmt(score, 2));
    if (m && m.levels) scoreCell.title = Object.entries(m.levels.categories)
      .map(([k, v]) => `${k} ${v === null ? "—" : fmt(v, 2)}`).join(" · ") + ` · age ${fmt(m.age_s, 1)} s`;
    tr.append(html("td", s.id), html("td", s.node),
      html("td", s.state && s.state !== "up" ? `${s.kind} (${s.state})` : s.kind), cap, scoreCell);
    tr.addEventListener("click", () => pickNode(s.node));
    tb.append(tr);
  }
}

// The compute API (sites with used/free capacity and state, anycast services and their
// assignments) when this controller has it; else the sites declared in the topology.
const extras = { sites: false, services: false, pending: null, last: 0 };

async function detectExtras() {
  try {
    const r = await fetch("/openapi.json", { headers: authHeaders() });
    if (!r.ok) return;
    const doc = await r.json();
    extras.sites = Boolean(doc.paths && doc.paths[`${API}/compute-sites`]);
    extras.services = Boolean(doc.paths && doc.paths[`${API}/services/{name}/assignments`]);
  } catch (_) { /* keep the topology's sites */ }
}

async function refreshCompute() {
  extras.last = Date.now();
  if (extras.sites) {
    const res = await api("/compute-sites");
    if (res.ok && Array.isArray(res.body)) {
      S.topo.compute_sites = res.body;
      renderSites(res.body);
    }
  }
  if (extras.services) {
    const res = await api("/services");
    const box = $("services");
    if (!res.ok || !Array.isArray(res.body)) return;
    box.replaceChildren();
    if (res.body.length) box.append(html("h2", "Services"));
    for (const svc of res.body.slice(0, 20)) {
      box.append(html("div", `${svc.name} ${svc.anycast_ip} · ${svc.kind} · ≤ ${fmt(svc.max_latency_ms)} ms · ${svc.policy} · ${svc.clients} clients`, { class: "service", "data-service": svc.name }));
      if (!svc.clients) continue;
      const a = await api(`/services/${encodeURIComponent(svc.name)}/assignments`);
      if (!a.ok || !Array.isArray(a.body)) continue;
      const ul = html("ul", null, { class: "assignments" });
      for (const x of a.body.slice(0, 50)) {
        const over = x.sla && x.sla.state === "violated";
        const li = html("li", `${x.client_host} → ${x.site_id} (${fmt(x.latency_ms, 2)} ms)`, over ? { class: "sla-violated", "data-sla": "violated" } : {});
        if (over) li.title = `SLA violated: measured ${fmt(x.sla.measured_ms, 2)} ms over the bound ${fmt(x.sla.bound_ms)} ms`;
        ul.append(li);
      }
      box.append(ul);
    }
  }
}

// at most once a second, and only when the stream says something changed
function scheduleCompute() {
  if (!extras.sites && !extras.services) return;
  if (extras.pending) return;
  const wait = Math.max(0, 1000 - (Date.now() - extras.last));
  extras.pending = setTimeout(() => { extras.pending = null; refreshCompute(); }, wait);
}

// --- live stream --------------------------------------------------------------------------

function applyLive(msg) {
  for (const u of msg.links || []) {
    const l = S.links[u.index];
    if (!l) continue;
    if (l.up !== u.up || l.reserved_mbps !== u.reserved_mbps || l.load_mbps !== u.load_mbps) {
      l.up = u.up; l.reserved_mbps = u.reserved_mbps; l.load_mbps = u.load_mbps;
      styleLink(u.index);
    }
  }
  for (const [name, connected] of Object.entries(msg.switches || {})) {
    const g = S.nodeEl.get(name);
    if (!g) continue;
    g.setAttribute("data-connected", connected ? "true" : "false");
    const n = S.topo.nodes.find((x) => x.name === name);
    if (n && n.connected !== connected) { n.connected = connected; g.querySelector("title").textContent = nodeTitle(n); }
  }
  if (msg.masters) {
    const key = JSON.stringify(msg.masters);
    if (key !== S.mastersKey) {
      S.mastersKey = key;
      S.masters = new Map(Object.entries(msg.masters));
      styleMasters();
      // new members, or counts in the legend: re-read the members (not alone: nothing moves)
      if (clustered()) scheduleCluster();
    }
  }
  if (msg.stale !== undefined) {
    $("stale").hidden = !msg.stale;
    document.body.dataset.stale = msg.stale ? "true" : "false";
  }
  if (msg.intents) {
    // re-render only on a change: rows under the pointer stay put
    const key = JSON.stringify(msg.intents.map((i) => [i.id, i.state, i.path, i.latency_ms, i.reroutes, i.sla]));
    if (key !== S.intentsKey) { S.intentsKey = key; S.intents = msg.intents; renderIntents(); }
  }
  if (msg.events) renderEvents(msg.events);
  if (msg.seq > 1) scheduleCompute();
  document.body.dataset.seq = String(msg.seq);
}

function renderEvents(events) {
  const ol = $("events");
  ol.replaceChildren();
  for (const ev of events.slice().reverse()) {
    const { time: _t, timestamp, kind, ...rest } = ev;
    const detail = Object.entries(rest).filter(([, v]) => v !== null && typeof v !== "object")
      .map(([k, v]) => `${k}=${v}`).join(" ");
    ol.append(html("li", `${(timestamp || "").slice(11, 19)} ${kind} ${detail}`));
  }
}

function setLive(on, text) {
  const e = $("live");
  e.className = `live ${on ? "on" : "off"}`;
  e.textContent = text || (on ? "live" : "offline");
}

// The stream is closed when the page is hidden (navigation, back-forward cache): a frozen
// page would otherwise hold one of the browser's six connections to the controller.
let streamCtl = null;

async function stream() {
  // fetch rather than EventSource: the token (when reads need it) goes in a header
  const ctl = new AbortController();
  streamCtl = ctl;
  for (let attempt = 0; !ctl.signal.aborted; attempt++) {
    try {
      const r = await fetch(`${API}/stream`, { headers: authHeaders({ Accept: "text/event-stream" }),
        cache: "no-store", signal: ctl.signal });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      setLive(true);
      attempt = 0;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter((x) => x.startsWith("data:")).map((x) => x.slice(5).trim()).join("\n");
          if (data) applyLive(JSON.parse(data));
        }
      }
    } catch (err) {
      if (ctl.signal.aborted) break;
      setLive(false, `offline (${err.message})`);
    }
    setLive(false);
    await new Promise((res) => setTimeout(res, Math.min(2000 * (attempt + 1), 10000)));
  }
}

window.addEventListener("pagehide", () => { if (streamCtl) streamCtl.abort(); setLive(false); });
window.addEventListener("pageshow", (ev) => { if (ev.persisted && S.topo) stream(); });

// --- start --------------------------------------------------------------------------------

async function main() {
  const saved = sessionStorage.getItem("cpn-token");
  if (saved) $("token").value = saved;
  $("token").addEventListener("input", () => sessionStorage.setItem("cpn-token", $("token").value.trim()));
  const res = await api("/topology");
  if (!res.ok) {
    $("path-result").className = "result error";
    $("path-result").textContent = `cannot read the topology: ${errorText(res)}`;
    return;
  }
  S.topo = res.body;
  $("topo-name").textContent = `${S.topo.name} · ${S.topo.nodes.length} nodes · ${S.topo.links.length} links`;
  for (const h of S.topo.hosts || []) {
    if (!S.hostsByNode.has(h.node)) S.hostsByNode.set(h.node, []);
    S.hostsByNode.get(h.node).push(h.name);
    S.hostNode.set(h.name, h.node);
  }
  const dl = $("names");
  for (const n of S.topo.nodes) dl.append(html("option", null, { value: n.name }));
  for (const n of S.topo.nodes) S.masters.set(n.name, n.master === undefined ? null : n.master);
  draw();
  legend();
  await refreshCluster();
  clusterPoll.last = Date.now();
  setupZoom();
  window.addEventListener("resize", rescale);
  const hubs = S.topo.nodes.filter((n) => n.kind === "national_hub");
  const centers = hubs.length ? hubs : S.topo.nodes.slice().sort((a, b) => a.name.localeCompare(b.name));
  for (const n of centers) $("circle-center").append(html("option", n.label ? `${n.name} (${n.label})` : n.name, { value: n.name }));
  for (const b of document.querySelectorAll("#tiers button[data-tier]")) {
    b.addEventListener("click", () => showCircle(Number(b.dataset.tier)));
  }
  $("circle-clear").addEventListener("click", clearCircle);
  $("path-form").addEventListener("submit", findPath);
  $("install").addEventListener("click", installIntent);
  $("clear-path").addEventListener("click", () => {
    clearRoute(); S.query = null; $("install").disabled = true; $("path-result").textContent = "";
    $("src").value = ""; $("dst").value = ""; S.pickNext = "src"; markPicked();
  });
  renderSites(S.topo.compute_sites || []);
  await detectExtras();
  await refreshCompute();
  await refreshIntents();
  document.body.dataset.ready = "true";
  stream();
}

window.addEventListener("DOMContentLoaded", main);
