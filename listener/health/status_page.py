# ruff: noqa: E501 - the inline script reads better with its lines whole
"""The status page at `/`: one self-contained HTML document (no external assets).

The /health document is embedded as JSON; a small script renders it — status, reasons, the
event-rate history as an inline SVG chart, the connection, event and pipeline figures, and
every figure of the report's `listener` section, whatever it holds (core/listener_figures.py
defines them), and with several destinations a row for each (written, lag, write errors, dead
letters, backlog), and with several homes the fleet: a row per home (subscribed, events/s,
lag, reconnects, its worst reason; a silent home marked) and the fleet's totals — and fetches
/health again every few seconds. Everything is inserted as text,
never as markup, so entity names and error texts from HA cannot inject anything. Without JavaScript the page still
shows the status and reasons, and reloads itself.
"""

from __future__ import annotations

import html
from typing import Any

from core import json_codec

REFRESH_S = 5

_STYLE = """
:root { --ok: #1b7f3b; --warn: #b26a00; --bad: #b3261e; --fg: #1d1d1f; --muted: #6b6b70;
  --line: #e3e3e8; --bar: #3a6ea5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  margin: 0 auto; padding: 16px 20px 32px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 4px; display: flex; gap: 12px; align-items: center; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.badge { font-size: 14px; padding: 2px 10px; border-radius: 12px; color: #fff;
  background: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.badge.healthy { background: var(--ok); } .badge.degraded { background: var(--warn); }
.badge.unhealthy { background: var(--bad); }
#updated, .muted { color: var(--muted); font-size: 12px; }
#reasons { margin: 4px 0; padding-left: 20px; }
#reasons li.unhealthy { color: var(--bad); } #reasons li.degraded { color: var(--warn); }
#error { color: var(--bad); font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 0 28px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 500; color: var(--muted); width: 45%; }
td.parked { color: var(--warn); font-weight: 600; }
tr.unhealthy td { color: var(--bad); } tr.degraded td { color: var(--warn); }
tr.silent td:first-child { font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
#chart svg { width: 100%; height: 180px; display: block; }
#chart text { font-size: 11px; fill: var(--muted); }
#chart rect.bar { fill: var(--bar); } #chart rect.bar.current { fill: #8fb0d3; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var REFRESH_MS = __REFRESH_MS__;
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function num(n) { return n === null || n === undefined ? "\u2013" : Number(n).toLocaleString("en-US"); }
  function rate(n) {
    if (n === null || n === undefined) return "\u2013";
    return (n >= 10 ? Math.round(n).toLocaleString("en-US") : Number(n).toFixed(1)) + "/min";
  }
  function duration(s) {
    if (s === null || s === undefined) return "\u2013";
    s = Math.max(0, Math.round(s));
    if (s < 120) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 120) return m + " min";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function bytes(n) {
    var units = ["B", "kB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(n < 10 ? 1 : 0) : String(n)) + " " + units[i];
  }
  function figure(key, value) {
    if (value === null || value === undefined) return "\u2013";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "object") {
      var names = Object.keys(value).sort();
      return names.map(function (k) { return k + " " + num(value[k]); }).join(", ") || "none";
    }
    if (/_at$/.test(key)) return new Date(value * 1000).toLocaleString();
    if (/_s$/.test(key)) return value < 10 ? Number(value).toFixed(3) + " s" : duration(value);
    if (/_bytes$/.test(key)) return bytes(value);
    return num(value);
  }
  function label(key) {
    var words = key.replace(/_s$/, "").replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }
  function rows(tableId, pairs) {
    var table = document.getElementById(tableId);
    table.replaceChildren();
    pairs.forEach(function (pair) {
      var tr = el("tr");
      tr.appendChild(el("th", pair[0]));
      var td = el("td", pair[1]);
      td.dataset.field = pair[2];
      tr.appendChild(td);
      table.appendChild(tr);
    });
  }
  function rateTable(tableId, head, items) {
    var table = document.getElementById(tableId);
    table.replaceChildren();
    var tr = el("tr");
    [head, "1 min", "5 min", "15 min"].forEach(function (h, i) {
      tr.appendChild(el("th", h, i ? "num" : ""));
    });
    table.appendChild(tr);
    if (!items.length) {
      var empty = el("tr");
      var td = el("td", "no events counted yet", "muted");
      td.colSpan = 4;
      empty.appendChild(td);
      table.appendChild(empty);
    }
    items.forEach(function (item) {
      var row = el("tr");
      row.dataset.name = item[0];
      row.appendChild(el("td", item[0]));
      ["1m", "5m", "15m"].forEach(function (w) { row.appendChild(el("td", rate(item[1][w]), "num")); });
      table.appendChild(row);
    });
  }
  function destinationTable(ds) {
    var names = Object.keys(ds || {});
    document.getElementById("destinations-section").hidden = names.length < 2;
    var table = document.getElementById("destinations");
    table.replaceChildren();
    var head = el("tr");
    ["Destination", "Written", "5 min", "Lag", "Write errors", "Dead letters", "Backlog"].forEach(function (h, i) {
      head.appendChild(el("th", h, i ? "num" : ""));
    });
    table.appendChild(head);
    names.forEach(function (name) {
      var d = ds[name], row = el("tr");
      row.dataset.name = name;
      row.appendChild(el("td", name));
      row.appendChild(el("td", num(d.written), "num"));
      row.appendChild(el("td", rate((d.write_rate_per_minute || {})["5m"]), "num"));
      row.appendChild(el("td", duration(d.lag_s), "num"));
      var errors = num(d.write_errors) + (d.write_errors_in_window ? " (" + num(d.write_errors_in_window) + " recent)" : "");
      row.appendChild(el("td", errors, "num"));
      row.appendChild(el("td", num(d.dead_letters), "num"));
      row.appendChild(el("td", num(d.backlog_events) + (d.parked ? " (parked)" : ""), d.parked ? "num parked" : "num"));
      if (d.last_write_error) row.title = d.last_write_error;
      table.appendChild(row);
    });
  }
  function homeTable(homes, fleet) {
    var names = Object.keys(homes || {});
    document.getElementById("homes-section").hidden = names.length < 2;
    var table = document.getElementById("homes");
    table.replaceChildren();
    var head = el("tr");
    ["Home", "State", "Events/s", "Lag", "Reconnects (1 h)", "Worst reason"].forEach(function (h, i) {
      head.appendChild(el("th", h, i > 1 && i < 5 ? "num" : ""));
    });
    table.appendChild(head);
    names.forEach(function (name) {
      var d = homes[name], row = el("tr", undefined, d.status + (d.silent ? " silent" : ""));
      row.dataset.name = name;
      row.dataset.status = d.status;
      var state = d.silent ? "SILENT" : d.is_subscribed ? "subscribed" : String(d.connection_state || "no state").replace(/_/g, " ");
      row.appendChild(el("td", name));
      row.appendChild(el("td", state));
      row.appendChild(el("td", Number(d.events_per_second || 0).toFixed(1), "num"));
      row.appendChild(el("td", duration(d.lag_s), "num"));
      row.appendChild(el("td", num(d.reconnects_last_hour), "num"));
      row.appendChild(el("td", d.reason || "none"));
      table.appendChild(row);
    });
    var totals = document.getElementById("fleet-totals");
    totals.textContent = !fleet ? "" : num(fleet.homes) + " homes, " + num(fleet.subscribed) + " subscribed, " +
      Number(fleet.events_per_second).toFixed(1) + " events/s, " + num(fleet.reconnects_last_hour) +
      " reconnects in the last hour" + (fleet.silent.length ? "; silent: " + fleet.silent.join(", ") : "");
  }
  function chart(history) {
    var box = document.getElementById("chart");
    box.replaceChildren();
    var W = 960, H = 180, left = 44, bottom = 20, top = 8;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("id", "rate-chart");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("role", "img");
    var max = 0;
    history.forEach(function (p) { max = Math.max(max, p[1]); });
    svg.setAttribute("aria-label", "events per minute over the last " + history.length + " minutes, at most " + max);
    svg.dataset.points = String(history.length);
    svg.dataset.max = String(max);
    var scale = max > 0 ? (H - top - bottom) / max : 0;
    var step = history.length ? (W - left) / history.length : 0;
    function text(x, y, s, anchor) {
      var t = document.createElementNS(SVG, "text");
      t.setAttribute("x", x); t.setAttribute("y", y);
      if (anchor) t.setAttribute("text-anchor", anchor);
      t.textContent = s;
      svg.appendChild(t);
    }
    var axis = document.createElementNS(SVG, "line");
    axis.setAttribute("x1", left); axis.setAttribute("x2", W);
    axis.setAttribute("y1", H - bottom); axis.setAttribute("y2", H - bottom);
    axis.setAttribute("stroke", "#c7c7cc");
    svg.appendChild(axis);
    history.forEach(function (p, i) {
      var h = p[1] * scale;
      var bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("class", i === history.length - 1 ? "bar current" : "bar");
      bar.setAttribute("x", (left + i * step + 1).toFixed(1));
      bar.setAttribute("y", (H - bottom - h).toFixed(1));
      bar.setAttribute("width", Math.max(1, step - 2).toFixed(1));
      bar.setAttribute("height", h.toFixed(1));
      bar.dataset.count = String(p[1]);
      var title = document.createElementNS(SVG, "title");
      title.textContent = new Date(p[0] * 1000).toLocaleTimeString() + ": " + num(p[1]) + " events";
      bar.appendChild(title);
      svg.appendChild(bar);
    });
    text(left - 6, top + 8, num(max), "end");
    text(left - 6, H - bottom, "0", "end");
    text(left, H - 4, history.length + " min ago");
    text(W, H - 4, "now", "end");
    box.appendChild(svg);
  }
  function render(h) {
    var c = h.connection, s = h.subscription, l = h.listener, p = h.pipeline, r = h.rates;
    document.title = "ha-ingestor: " + h.status;
    var badge = document.getElementById("status");
    badge.textContent = h.status;
    badge.className = "badge " + h.status;
    var list = document.getElementById("reasons");
    list.replaceChildren();
    if (!h.checks.length) list.appendChild(el("li", "All good: events arrive and are written.", "ok"));
    h.checks.forEach(function (check) {
      var li = el("li", check.message, check.severity);
      li.dataset.code = check.code;
      list.appendChild(li);
    });
    var rates = s.event_rate_per_minute || {};
    chart(r.history || []);
    rows("ha", [
      ["State", c.state + (c.ha_version ? " (HA " + c.ha_version + ")" : ""), "connection.state"],
      ["Subscriptions", s.active_subscriptions + (s.event_types.length ? ": " + s.event_types.join(", ") : ""), "subscription.active_subscriptions"],
      ["Connection attempts", num(c.attempts) + " (" + num(c.failed) + " failed)", "connection.attempts"],
      ["Reconnects", num(c.reconnects) + " since start, " + num(c.reconnects_last_hour) + " in the last hour", "connection.reconnects"],
      ["Last error", c.last_error || "none", "connection.last_error"],
      ["Up for", duration(h.uptime_s), "uptime_s"]
    ]);
    var byType = Object.keys(s.events_by_type).sort().map(function (k) { return k + " " + num(s.events_by_type[k]); });
    rows("events", [
      ["Last 1 / 5 / 15 min", rate(rates["1m"]) + " · " + rate(rates["5m"]) + " · " + rate(rates["15m"]), "subscription.event_rate_per_minute"],
      ["Usually", rate(s.usual_rate_per_minute), "subscription.usual_rate_per_minute"],
      ["Received", num(s.total_events_received), "subscription.total_events_received"],
      ["By type", byType.join(", ") || "\u2013", "subscription.events_by_type"],
      ["Last event", s.last_event_age_s === null ? "none yet" : duration(s.last_event_age_s) + " ago", "subscription.last_event_age_s"],
      ["Spool", num(l.spool_depth) + (l.broker_up ? "" : " (broker unreachable)"), "events.spool"]
    ]);
    var written = p.write_rate_per_minute || {};
    rows("pipeline", [
      ["Queue depth", num(p.queue_depth), "pipeline.queue_depth"],
      ["Taken by workers", num(p.in_flight), "pipeline.in_flight"],
      ["Oldest waiting", duration(p.oldest_message_age_s), "pipeline.oldest_message_age_s"],
      ["Written", num(p.written) + " (" + rate(written["5m"]) + " over 5 min)", "pipeline.written"],
      ["Retried", num(p.retried), "pipeline.retried"],
      ["Write errors", num(p.write_errors), "pipeline.write_errors"],
      ["Dead letters", num(p.dead_letters), "pipeline.dead_letters"],
      ["Type-shadowed points", num(p.type_shadowed), "pipeline.type_shadowed"],
      ["Texts left out (VictoriaMetrics)", num(p.text_left_out), "pipeline.text_left_out"],
      ["Beat's figures", p.age_s === null ? "beat has not run" : duration(p.age_s) + " old", "pipeline.age_s"]
    ]);
    destinationTable(h.destinations);
    homeTable(h.homes, h.fleet);
    document.getElementById("home").textContent = l.instance ? "home " + l.instance : "";
    rows("listener", Object.keys(l).filter(function (k) { return k !== "present"; }).map(function (k) {
      return [label(k), figure(k, l[k]), "listener." + k];
    }));
    rateTable("domains", "Domain", Object.keys(r.by_domain).map(function (k) { return [k, r.by_domain[k]]; }));
    rateTable("entities", "Entity", r.top_entities.map(function (e) { return [e.entity_id, e]; }));
    document.getElementById("updated").textContent =
      "updated " + new Date(h.time * 1000).toLocaleTimeString() + " · refreshes every " + (REFRESH_MS / 1000) + " s";
    document.body.dataset.rendered = "yes";
  }
  function refresh() {
    fetch("health", { cache: "no-store" })
      .then(function (reply) { return reply.json(); })
      .then(function (h) {
        render(h);
        document.getElementById("error").hidden = true;
        document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      })
      .catch(function () {
        var box = document.getElementById("error");
        box.textContent = "cannot reach the listener: the figures below are from the last answer";
        box.hidden = false;
      });
  }
  render(JSON.parse(document.getElementById("health-data").textContent));
  setInterval(refresh, REFRESH_MS);
})();
"""


def render_status_page(health: dict[str, Any]) -> str:
    """The page for one /health document."""
    status = html.escape(str(health.get("status", "unknown")))
    reasons = "".join(f"<li>{html.escape(str(m))}</li>" for m in health.get("reasons", []))
    # Inside <script>, only "</" could end the element early: escape every "<".
    data = json_codec.dumps(health).decode().replace("<", "\\u003c")
    script = _SCRIPT.replace("__REFRESH_MS__", str(REFRESH_S * 1000))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ha-ingestor: {status}</title>
<noscript><meta http-equiv="refresh" content="{REFRESH_S * 2}"></noscript>
<style>{_STYLE}</style></head>
<body>
<header><h1>ha-ingestor <span id="home" class="muted"></span> <span id="status" class="badge {status}">{status}</span></h1>
<div id="updated"></div></header>
<p id="error" hidden></p>
<h2>Reasons</h2><ul id="reasons">{reasons}</ul>
<h2>Events per minute, last 60 minutes</h2><div id="chart"></div>
<section id="homes-section" hidden><h2>Homes</h2><table id="homes"></table><p id="fleet-totals" class="muted"></p></section>
<section id="destinations-section" hidden><h2>Destinations</h2><table id="destinations"></table></section>
<div class="grid">
<section><h2>Home Assistant</h2><table id="ha"></table></section>
<section><h2>Events</h2><table id="events"></table></section>
<section><h2>Pipeline</h2><table id="pipeline"></table></section>
<section><h2>Domains</h2><table id="domains"></table></section>
<section><h2>Top entities</h2><table id="entities"></table></section>
<section><h2>Listener</h2><table id="listener"></table></section>
</div>
<script id="health-data" type="application/json">{data}</script>
<script>{script}</script>
</body></html>
"""
