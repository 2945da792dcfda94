// The picture of the network: redraws itself from /view.json every second.
// Served by the Plexus daemon on its metrics listener; nothing outside it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PERIOD_MS = 1000;
const NET_W = 460;

let prev = null; // the previous view, for rates
let updates = 0;

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function si(n, unit) {
  const steps = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [f, p] of steps) if (n >= f) return (n / f).toFixed(n >= 10 * f ? 0 : 1) + " " + p + unit;
  return n.toFixed(0) + " " + unit;
}

function portKey(network, endpoint) { return network + "/" + endpoint; }

// Per-port rates between the previous view and `v`, by "network/endpoint".
function rates(v) {
  const out = new Map();
  const before = new Map();
  if (prev) for (const p of prev.ports) before.set(portKey(p.network, p.endpoint), p);
  const dt = prev ? v.time - prev.time : 0;
  for (const p of v.ports) {
    const b = before.get(portKey(p.network, p.endpoint));
    const drops = (q) => Object.values(q.drops || {}).reduce((a, n) => a + n, 0);
    let r = { fps: 0, bps: 0, dps: 0, known: false };
    if (b && dt > 0) {
      r = {
        fps: Math.max(0, (p.rx_frames + p.tx_frames - b.rx_frames - b.tx_frames) / dt),
        bps: Math.max(0, 8 * (p.rx_bytes + p.tx_bytes - b.rx_bytes - b.tx_bytes) / dt),
        dps: Math.max(0, (drops(p) - drops(b)) / dt),
        known: true,
      };
    }
    out.set(portKey(p.network, p.endpoint), r);
  }
  return out;
}

function draw(v, r) {
  const svg = document.getElementById("graph");
  const nets = v.networks;
  const width = Math.max(NET_W * Math.max(nets.length, 1), 900);
  const height = 600;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const links = el("g", { class: "links" });
  const nodes = el("g", { class: "nodes" });
  svg.append(links, nodes);

  const hx = width / 2, hy = 36;
  const host = el("g", { class: "host", "data-name": "host" });
  host.append(el("rect", { x: hx - 110, y: hy - 20, width: 220, height: 40, rx: 6 }),
    el("text", { x: hx, y: hy + 5, "text-anchor": "middle" }, "host: NAT and published ports"));
  nodes.append(host);
  if (nets.length === 0) {
    nodes.append(el("text", { x: hx, y: 200, "text-anchor": "middle", class: "small" }, "no networks yet: plexus network create NAME"));
  }

  nets.forEach((n, i) => {
    const cx = NET_W / 2 + i * NET_W + (width - NET_W * nets.length) / 2;
    const gy = 130, sy = 250;
    const flows = v.nat.filter((f) => v.endpoints.some((e) => e.name === f.endpoint && e.network === n.name)).length;
    if (n.gateway) {
      const g = el("g", { class: "gateway", "data-network": n.name });
      g.append(el("rect", { x: cx - 80, y: gy - 18, width: 160, height: 36, rx: 18 }),
        el("text", { x: cx, y: gy + 5, "text-anchor": "middle" }, "gateway " + n.gateway));
      nodes.append(g);
      const gl = el("g", { class: "link" });
      gl.append(el("line", { x1: cx, y1: gy + 18, x2: cx, y2: sy - 20 }));
      links.append(gl);
      if (!n.internal) {
        const nat = el("g", { class: "nat", "data-network": n.name });
        nat.append(el("line", { x1: hx, y1: hy + 20, x2: cx, y2: gy - 18 }),
          el("text", { x: (hx + cx) / 2 + 8, y: (hy + gy) / 2 + 4, class: "small" }, `NAT: ${flows} flow${flows === 1 ? "" : "s"}`));
        links.append(nat);
      } else {
        nodes.append(el("text", { x: cx + 90, y: gy + 4, class: "small" }, "internal: no way out"));
      }
    }
    const sw = el("g", { class: "switch", "data-network": n.name });
    sw.append(el("rect", { x: cx - 100, y: sy - 20, width: 200, height: 40, rx: 4 }),
      el("text", { x: cx, y: sy + 5, "text-anchor": "middle" }, `${n.name}  ${n.subnet || ""}`));
    nodes.append(sw);

    const eps = v.endpoints.filter((e) => e.network === n.name).sort((a, b) => a.name.localeCompare(b.name));
    const radius = 200;
    eps.forEach((e, k) => {
      const angle = eps.length === 1 ? Math.PI / 2 : Math.PI * (0.12 + 0.76 * k / (eps.length - 1));
      const ex = cx + radius * Math.cos(angle) * 1.05, ey = sy + 30 + (radius - 40) * Math.sin(angle);
      const rate = r.get(portKey(n.name, e.name)) || { fps: 0, bps: 0, dps: 0, known: false };
      const link = el("g", {
        class: "link" + (rate.fps >= 1 ? " busy" : ""),
        "data-endpoint": e.name, "data-network": n.name,
        "data-fps": rate.fps.toFixed(1), "data-bps": rate.bps.toFixed(0), "data-dps": rate.dps.toFixed(1),
      });
      const mx = (cx + ex) / 2, my = (sy + 20 + ey) / 2;
      let label = rate.known ? `${si(rate.fps, "fr/s")} · ${si(rate.bps, "bit/s")}` : "…";
      if (rate.dps > 0) label += ` · ${si(rate.dps, "drops/s")}`;
      link.append(el("line", { x1: cx, y1: sy + 20, x2: ex, y2: ey - 26 }),
        el("text", { x: mx + 6, y: my, class: "rate" }, label));
      links.append(link);
      const node = el("g", { class: "endpoint", "data-name": e.name, "data-network": n.name });
      node.append(el("circle", { cx: ex, cy: ey, r: 26 }),
        el("text", { x: ex, y: ey + 4, "text-anchor": "middle" }, e.name),
        el("text", { x: ex, y: ey + 42, "text-anchor": "middle", class: "small" }, e.address || ""),
        el("text", { x: ex, y: ey + 55, "text-anchor": "middle", class: "small" }, e.mac || ""));
      nodes.append(node);
      (e.ports || []).forEach((b, j) => {
        const p = el("g", { class: "published", "data-endpoint": e.name });
        const text = `published ${b.host_ip}:${b.host_port} → ${b.container_port}/${b.protocol}`;
        p.append(el("text", { x: ex, y: ey + 68 + 13 * j, "text-anchor": "middle" }, text));
        nodes.append(p);
      });
    });
  });
}

function table(headers, rows) {
  const t = document.createElement("table");
  const head = t.insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  for (const row of rows) {
    const tr = t.insertRow();
    for (const c of row) tr.insertCell().textContent = String(c);
  }
  return t;
}

function empty(text) {
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = text;
  return p;
}

function tables(v) {
  const fdb = document.getElementById("fdb");
  fdb.replaceChildren();
  for (const n of v.networks) {
    const h = document.createElement("h3");
    h.textContent = n.name;
    const rows = (v.fdb[n.name] || []).map((f) => [f.mac, f.endpoint, f.age_secs.toFixed(1) + " s"]);
    fdb.append(h, rows.length ? table(["MAC", "endpoint", "age"], rows) : empty("nothing learned yet"));
  }
  if (v.networks.length === 0) fdb.append(empty("no networks"));
  const nat = document.getElementById("nat");
  const rows = v.nat.map((f) => [f.proto, f.inside, f.outside, f.endpoint, f.state || "-", f.packets_out, f.packets_in, f.idle_secs.toFixed(1) + " s"]);
  nat.replaceChildren(rows.length
    ? table(["proto", "inside", "outside", "endpoint", "state", "out", "in", "idle"], rows)
    : empty("no flows"));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("/view.json", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const v = await res.json();
    const r = rates(v);
    draw(v, r);
    tables(v);
    if (prev && v.worker_cpu_secs != null && prev.worker_cpu_secs != null && v.time > prev.time) {
      const load = 100 * (v.worker_cpu_secs - prev.worker_cpu_secs) / (v.time - prev.time);
      document.getElementById("cpu").textContent = `switch worker CPU ${load.toFixed(0)} %`;
    }
    prev = v;
    updates += 1;
    document.body.dataset.updates = String(updates);
    status.className = "";
    status.textContent = "updated " + new Date(v.time * 1000).toLocaleTimeString();
  } catch (err) {
    status.className = "stale";
    status.textContent = "daemon unreachable (" + err.message + "), retrying";
  }
  setTimeout(refresh, PERIOD_MS);
}

refresh();
