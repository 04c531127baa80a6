/**
 * The live status page every balancer serves at `/`: one HTML document, no
 * build step, no dependency. It reads `/api/v1/session-pool/events`
 * (server-sent events: `status` on every heartbeat, throttled; `leases`
 * every 2 s) and redraws. Read-only: actions stay with the CLI and its
 * NATS permissions.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shoal</title>
<style>
  :root { --bg:#0f1419; --panel:#171e26; --fg:#e6e6e6; --dim:#8a96a3; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --idle:#2f81f7; --active:#a371f7; --creating:#8a96a3; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, Segoe UI, sans-serif; background:var(--bg); color:var(--fg); }
  header { display:flex; flex-wrap:wrap; gap:.5rem 1.5rem; align-items:baseline; padding:.8rem 1rem; background:var(--panel); border-bottom:1px solid #2a333d; }
  header h1 { margin:0; font-size:1.2rem; }
  .dim { color:var(--dim); }
  main { padding:1rem; display:grid; gap:1rem; grid-template-columns:repeat(auto-fit, minmax(min(100%, 28rem), 1fr)); }
  section { background:var(--panel); border:1px solid #2a333d; border-radius:6px; padding:.8rem; min-width:0; }
  section.wide { grid-column:1 / -1; }
  h2 { margin:0 0 .5rem; font-size:1rem; }
  .scroll { overflow-x:auto; }
  table { border-collapse:collapse; width:100%; }
  th, td { text-align:left; padding:.25rem .5rem; border-bottom:1px solid #2a333d; white-space:nowrap; }
  th { color:var(--dim); font-weight:normal; }
  td.n { text-align:right; font-variant-numeric:tabular-nums; }
  .pill { display:inline-block; padding:0 .4rem; border-radius:.6rem; font-size:.8rem; border:1px solid currentColor; }
  .ok { color:var(--ok); } .warn { color:var(--warn); } .bad { color:var(--bad); }
  .bar { display:flex; height:.7rem; width:8rem; background:#0b0f13; border-radius:2px; overflow:hidden; }
  .bar i { display:block; height:100%; }
  canvas { width:100%; height:160px; display:block; }
  #conn.bad::before { content:"● "; } #conn.ok::before { content:"● "; }
  .legend span { margin-right:1rem; }
</style>
</head>
<body>
<header>
  <h1>Shoal</h1>
  <span id="conn" class="warn">connecting…</span>
  <span class="dim">balancer <b id="bal">-</b></span>
  <span class="dim">strategy <b id="strategy">-</b></span>
  <span class="dim" id="updated"></span>
</header>
<main>
  <section class="wide"><h2>Nodes</h2><div class="scroll"><table id="nodes"><thead><tr>
    <th>node</th><th>state</th><th>health</th><th>circuit</th><th>weight</th><th>pool</th><th>total</th><th>idle</th><th>active</th><th>creating</th><th>waiting</th><th>target</th><th>max</th><th></th>
  </tr></thead><tbody></tbody></table></div></section>
  <section><h2>Pools</h2><div class="scroll"><table id="pools"><thead><tr>
    <th>pool</th><th>nodes</th><th>total</th><th>idle</th><th>active</th><th>waiting</th><th>max</th><th>acq/s</th><th>latency</th>
  </tr></thead><tbody></tbody></table></div></section>
  <section><h2>Acquire rate and latency</h2>
    <canvas id="chart" width="600" height="160"></canvas>
    <div class="legend dim"><span style="color:var(--idle)">■ acquires/s</span><span style="color:var(--warn)">■ latency ms</span><span id="chartnow"></span></div>
  </section>
  <section><h2>Autoscaler</h2><div id="autoscaler" class="dim">not running</div></section>
  <section><h2>Health checker</h2><div id="health" class="dim">not running</div></section>
  <section><h2>Settings</h2><div class="scroll"><table id="settings"><thead><tr><th>setting</th><th>for</th><th>value</th><th>source</th></tr></thead><tbody></tbody></table></div></section>
  <section class="wide"><h2>Leases</h2><div class="scroll"><table id="leases"><thead><tr>
    <th>lease</th><th>node</th><th>pool</th><th>resource</th><th>holder</th><th>age</th><th>TTL left</th>
  </tr></thead><tbody></tbody></table></div><div id="leasenote" class="dim"></div></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ms = (n) => n == null ? "-" : n < 1000 ? Math.round(n) + " ms" : n < 60000 ? (n / 1000).toFixed(1) + " s" : Math.round(n / 60000) + " min";
const cls = (ok) => ok === true ? "ok" : ok === false ? "bad" : "warn";
const history = [];

function bar(p) {
  const cap = Math.max(p.max, p.total, 1);
  const seg = (n, c) => n > 0 ? '<i style="width:' + (100 * n / cap) + '%;background:var(--' + c + ')"></i>' : "";
  return '<div class="bar" title="idle ' + p.idle + ', active ' + p.active + ', creating ' + p.creating + ' of max ' + p.max + '">' + seg(p.idle, "idle") + seg(p.active, "active") + seg(p.creating, "creating") + "</div>";
}

function renderStatus(st) {
  $("bal").textContent = st.balancerId;
  $("strategy").textContent = st.strategy;
  $("updated").textContent = "updated " + new Date(st.at).toLocaleTimeString();
  const rows = [];
  for (const n of [...st.nodes].sort((a, b) => a.nodeId.localeCompare(b.nodeId, undefined, { numeric: true }))) {
    const state = n.state + (n.draining ? ", draining" : "");
    const sc = n.state === "alive" && !n.draining ? "ok" : n.state === "gone" ? "bad" : "warn";
    const h = n.health ? '<span class="pill ' + cls(n.health.healthy) + '" title="' + esc(n.health.reason || "") + '">' + (n.health.healthy ? "healthy" : "unhealthy") + "</span>" : '<span class="dim">-</span>';
    const c = n.circuit === "closed" ? '<span class="ok">closed</span>' : '<span class="bad">' + esc(n.circuit) + "</span>";
    const pools = Object.entries(n.pools);
    const head = '<td data-node="' + esc(n.nodeId) + '"><b>' + esc(n.nodeId) + '</b><div class="dim">' + esc(n.host) + " pid " + esc(n.pid) + '</div></td><td class="' + sc + '" data-state="' + esc(n.state) + '">' + esc(state) + "</td><td>" + h + "</td><td>" + c + '</td><td class="n">' + (n.weight ?? "-") + "</td>";
    if (pools.length === 0) rows.push("<tr>" + head + '<td colspan="9" class="dim">no pools</td></tr>');
    pools.forEach(([name, p], i) => {
      const cells = i === 0 ? head : '<td colspan="5"></td>';
      const note = p.available === false ? '<span class="bad">' + esc(p.reason || "unavailable") + "</span>" : bar(p);
      rows.push('<tr data-pool="' + esc(name) + '" data-of="' + esc(n.nodeId) + '">' + cells + "<td>" + esc(name) + '</td><td class="n total">' + p.total + '</td><td class="n">' + p.idle + '</td><td class="n">' + p.active + '</td><td class="n">' + p.creating + '</td><td class="n">' + p.waiting + '</td><td class="n target">' + p.target + '</td><td class="n">' + p.max + "</td><td>" + note + "</td></tr>");
    });
  }
  $("nodes").tBodies[0].innerHTML = rows.join("") || '<tr><td colspan="14" class="dim">no nodes heard</td></tr>';

  let rate = 0, lat = 0;
  $("pools").tBodies[0].innerHTML = Object.entries(st.pools).sort().map(([name, p]) => {
    rate += p.requestRate; lat += p.latencyMs * p.requestRate;
    return "<tr><td>" + esc(name) + '</td><td class="n">' + p.nodes + '</td><td class="n">' + p.total + '</td><td class="n">' + p.idle + '</td><td class="n">' + p.active + '</td><td class="n">' + p.waiting + '</td><td class="n">' + p.max + '</td><td class="n">' + p.requestRate.toFixed(1) + '</td><td class="n">' + p.latencyMs.toFixed(1) + " ms</td></tr>";
  }).join("");
  history.push({ t: st.at, rate, lat: rate > 0 ? lat / rate : 0 });
  while (history.length > 0 && st.at - history[0].t > 120000) history.shift();
  draw();

  $("settings").tBodies[0].innerHTML = ((st.settings && st.settings.values) || []).map((r) =>
    "<tr><td>" + esc(r.key) + "</td><td>" + esc(r.pool || r.nodeId || "") + "</td><td>" + esc(r.key === "acquire_timeout" ? ms(r.value) : r.value) + "</td><td>" + esc(r.source) + (r.source === "runtime" ? ' <span class="dim">by ' + esc(r.by || "unknown") + (r.at ? " at " + new Date(r.at).toLocaleString() : "") + "</span>" : "") + "</td></tr>").join("");

  const a = st.autoscaler || {};
  const targets = Object.entries(a.targets || {});
  const desired = Object.entries(a.desired || {});
  const desiredHtml = desired.length ? '<div class="dim">desired pool-nodes</div><table id="desired"><tbody>' + desired.map(([p, d]) => "<tr><td>" + esc(p) + "</td><td>" + esc(typeof d === "object" ? JSON.stringify(d) : d) + "</td></tr>").join("") + "</tbody></table>" : "";
  const targetsHtml = desiredHtml + (targets.length ? '<div class="dim">targets (settings bucket)</div><table id="targets"><tbody>' + targets.map(([p, t]) => "<tr><td>" + esc(p) + "</td><td>" + esc(typeof t === "object" ? JSON.stringify(t) : t) + "</td></tr>").join("") + "</tbody></table>" : "");
  if (!a.running) $("autoscaler").innerHTML = '<span class="dim">not running' + (a.error && a.error !== "not running" ? " (" + esc(a.error) + ")" : "") + "</span>" + targetsHtml;
  else {
    const s = a.status || {};
    const parts = [];
    if (s.leader !== undefined) parts.push("<div>leader <b>" + esc(typeof s.leader === "object" ? JSON.stringify(s.leader) : s.leader) + "</b>" + (s.epoch !== undefined ? ' <span class="dim">epoch ' + esc(s.epoch) + "</span>" : "") + "</div>");
    for (const key of ["targets", "desired", "decisions", "lastDecisions"]) if (s[key] !== undefined) parts.push('<div class="dim">' + key + '</div><pre style="margin:0;white-space:pre-wrap">' + esc(JSON.stringify(s[key], null, 1)) + "</pre>");
    if (parts.length === 0) parts.push('<pre style="margin:0;white-space:pre-wrap">' + esc(JSON.stringify(s, null, 1)) + "</pre>");
    $("autoscaler").innerHTML = parts.join("") + targetsHtml;
  }
  const verdicts = st.nodes.filter((n) => n.health);
  $("health").innerHTML = !st.health || !st.health.running ? '<span class="dim">not running (no verdicts heard)</span>'
    : verdicts.map((n) => '<div><b>' + esc(n.nodeId) + '</b> <span class="' + cls(n.health.healthy) + '">' + (n.health.healthy ? "healthy" : "unhealthy") + "</span> " + esc(n.health.reason || "") + ' <span class="dim">' + ms(st.at - n.health.at) + " ago</span></div>").join("");
}

function renderLeases(r) {
  const now = r.at;
  $("leases").tBodies[0].innerHTML = r.leases.map((l) => {
    const h = l.holder || {};
    return "<tr><td>" + esc(l.leaseId) + "</td><td>" + esc(l.node) + "</td><td>" + esc(l.pool) + "</td><td>" + esc(l.resourceId) + "</td><td>" + esc([h.client, h.host, h.pid].filter((x) => x != null).join(" / ")) + '</td><td class="n">' + ms(l.heldMs) + '</td><td class="n">' + ms(l.expiresInMs) + "</td></tr>";
  }).join("") || '<tr><td colspan="7" class="dim">no leases held</td></tr>';
  $("leasenote").textContent = r.missing && r.missing.length ? "no answer from " + r.missing.join(", ") : "";
}

function draw() {
  const c = $("chart"), g = c.getContext("2d");
  const w = c.width = c.clientWidth * (window.devicePixelRatio || 1), h = c.height = 160 * (window.devicePixelRatio || 1);
  g.clearRect(0, 0, w, h);
  if (history.length < 2) return;
  // The last two minutes, or less while the page is new: the line spans the whole width either way.
  const t1 = history[history.length - 1].t, t0 = Math.max(history[0].t, t1 - 120000), span = Math.max(1, t1 - t0);
  const line = (key, color) => {
    const max = Math.max(1, ...history.map((p) => p[key])) * 1.1;
    g.strokeStyle = color; g.lineWidth = 2 * (window.devicePixelRatio || 1); g.beginPath();
    history.forEach((p, i) => { const x = (p.t - t0) / span * w, y = h - p[key] / max * h; i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
  };
  const css = getComputedStyle(document.documentElement);
  line("rate", css.getPropertyValue("--idle"));
  line("lat", css.getPropertyValue("--warn"));
  const last = history[history.length - 1];
  $("chartnow").textContent = last.rate.toFixed(1) + " acq/s, " + last.lat.toFixed(1) + " ms";
}

function connect() {
  const es = new EventSource("api/v1/session-pool/events");
  es.addEventListener("status", (e) => { $("conn").className = "ok"; $("conn").textContent = "live"; renderStatus(JSON.parse(e.data)); });
  es.addEventListener("leases", (e) => renderLeases(JSON.parse(e.data)));
  es.onerror = () => { $("conn").className = "bad"; $("conn").textContent = "disconnected, retrying"; };
}
connect();
</script>
</body>
</html>
`;
