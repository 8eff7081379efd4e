// Analytics (GET /analytics/summary, bucketed) and the SLO snapshot (GET /slo), charted with uPlot.

import { api, ApiError } from "../api.js";
import { badge, clear, errorList, field, h, money, notAvailable, panel, seconds, time, TZ } from "../util.js";

const RANGES = {
  "24h": { label: "Last 24 hours", ms: 24 * 3600e3, step: "hour" },
  "7d": { label: "Last 7 days", ms: 7 * 86400e3, step: "day" },
  "30d": { label: "Last 30 days", ms: 30 * 86400e3, step: "day" },
};
const SLO_REFRESH_MS = 15000;

export async function analyticsPage(main) {
  const charts = [];
  const [rangeField, range] = field("Range", h("select", Object.entries(RANGES).map(([k, r]) => h("option", { value: k }, r.label))));
  const [assistantField, assistant] = field("Assistant", h("select", h("option", { value: "" }, "all")));
  const form = h("form.form-row", { "aria-label": "Analytics range" }, rangeField, assistantField, h("div", h("button", { type: "submit" }, "Show")));
  const grid = h("div.grid");
  const [summaryPanel, summaryBody] = panel("Calls", { id: "analytics-panel" });
  const [chartPanel, chartBody] = panel("Over time", { wide: true });
  const [reasonsPanel, reasonsBody] = panel("Ended reasons");
  const [sloPanel, sloBody] = panel("SLO snapshot", { wide: true, id: "slo-panel" });
  grid.append(summaryPanel, reasonsPanel, chartPanel, sloPanel);
  main.append(h("h1", "Analytics & SLO"), form, grid);

  api("/assistant", { query: { limit: 1000 } })
    .then((rows) => rows.forEach((a) => assistant.append(h("option", { value: a.id }, a.name || a.id))))
    .catch(() => {});

  function destroyCharts() {
    while (charts.length) charts.pop().destroy();
  }

  async function loadAnalytics() {
    destroyCharts();
    const r = RANGES[range.value];
    const end = new Date();
    const start = new Date(end.getTime() - r.ms);
    let s;
    try {
      s = await api("/analytics/summary", { query: { start: start.toISOString(), end: end.toISOString(), step: r.step, assistantId: assistant.value } });
    } catch (err) {
      for (const b of [summaryBody, reasonsBody, chartBody]) clear(b);
      if (err instanceof ApiError && err.status === 404) {
        summaryBody.append(notAvailable("Analytics"), h("p.muted", err.messages.join(" ")));
      } else summaryBody.append(errorList(err));
      return;
    }
    const c = s.calls || {};
    const d = s.durationSeconds || {};
    const lat = s.turnLatencySeconds || {};
    const cost = s.cost || {};
    clear(summaryBody).append(
      h(
        "dl.kv",
        h("dt", "Calls"), h("dd", String(c.total ?? 0)),
        h("dt", "By direction"), h("dd", Object.entries(c.byDirection || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "—"),
        h("dt", "Duration p50 / p95"), h("dd", `${seconds(d.p50)} / ${seconds(d.p95)}`),
        h("dt", "Turn latency p50 / p95 / p99"), h("dd", `${seconds(lat.p50)} / ${seconds(lat.p95)} / ${seconds(lat.p99)}`),
        h("dt", "Cost"), h("dd", `${money(cost.total)} over ${cost.pricedCalls ?? 0} priced calls`),
      ),
      h("p.muted", `${time(s.timeRange.start).textContent} to ${time(s.timeRange.end).textContent} (${TZ})`),
    );
    const reasons = Object.entries(c.byEndedReason || {}).sort((a, b) => b[1] - a[1]);
    clear(reasonsBody).append(
      reasons.length
        ? h("table", h("thead", h("tr", h("th", { scope: "col" }, "Reason"), h("th", { scope: "col" }, "Calls"))), h("tbody", reasons.map(([k, v]) => h("tr", h("td", k), h("td", String(v))))))
        : h("p.muted", "No ended calls in this range."),
    );
    clear(chartBody);
    const buckets = s.buckets || [];
    if (!buckets.length || typeof uPlot === "undefined") {
      chartBody.append(h("p.muted", typeof uPlot === "undefined" ? "The chart library did not load." : "No data."));
      return;
    }
    const xs = buckets.map((b) => new Date(b.start).getTime() / 1000);
    charts.push(
      timeChart(chartBody, "Calls per " + r.step, xs, [
        { label: "calls", values: buckets.map((b) => b.calls), stroke: "#1f5fbf", fill: "rgba(31,95,191,0.15)" },
        { label: "ended", values: buckets.map((b) => b.endedCalls), stroke: "#1d7a3a" },
      ]),
      timeChart(chartBody, "Average duration (s)", xs, [{ label: "avg duration s", values: buckets.map((b) => b.durationSecondsAvg), stroke: "#9a6200" }]),
      timeChart(chartBody, "Cost (USD)", xs, [{ label: "cost", values: buckets.map((b) => b.costTotal), stroke: "#b3261e" }]),
    );
  }

  async function loadSlo() {
    let slo;
    try {
      slo = await api("/slo");
    } catch (err) {
      clear(sloBody).append(err instanceof ApiError && err.status === 404 ? notAvailable("The SLO snapshot") : errorList(err));
      return;
    }
    const windows = Object.entries(slo.windows || {});
    const objectives = [];
    for (const [, w] of windows)
      for (const [group, objs] of Object.entries(w))
        if (group !== "status" && group !== "audio")
          for (const [name, o] of Object.entries(objs)) if (o && typeof o === "object" && "target" in o && !objectives.includes(`${group}.${name}`)) objectives.push(`${group}.${name}`);
    const get = (w, key) => {
      const [g, n] = key.split(".");
      return (w[g] || {})[n] || {};
    };
    const rows = objectives.map((key) =>
      h(
        "tr",
        h("th", { scope: "row" }, key),
        windows.map(([, w]) => {
          const o = get(w, key);
          return h("td", o.value == null ? h("span.na", "no data") : `${fmt(o.value, o.unit)}`, " ", badge(o.status), h("div.muted", `target ${fmt(o.target, o.unit)} · n=${o.samples ?? 0}`));
        }),
      ),
    );
    const chartBox = h("div");
    clear(sloBody).append(
      h("p", "Overall: ", badge(slo.status), h("span.muted", " generated "), time(slo.generatedAt)),
      h("div.table-wrap", h("table#slo-table", h("thead", h("tr", h("th", { scope: "col" }, "Objective"), windows.map(([k, w]) => h("th", { scope: "col" }, `${k} `, badge(w.status))))), h("tbody", rows))),
      h("p.chart-title", "Each objective's value as a share of its target (1.0 = at target)"),
      chartBox,
    );
    if (typeof uPlot !== "undefined" && objectives.length) {
      const series = windows.map(([k, w], i) => ({
        label: k,
        values: objectives.map((key) => {
          const o = get(w, key);
          return o.value == null || !o.target ? null : o.value / o.target;
        }),
        stroke: ["#1f5fbf", "#9a6200", "#1d7a3a"][i % 3],
      }));
      if (sloChart) sloChart.destroy();
      sloChart = barChart(chartBox, objectives, series);
    }
  }

  let sloChart = null;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadAnalytics();
  });
  await Promise.all([loadAnalytics(), loadSlo()]);
  const timer = setInterval(() => document.visibilityState === "visible" && loadSlo(), SLO_REFRESH_MS);
  return () => {
    clearInterval(timer);
    destroyCharts();
    if (sloChart) sloChart.destroy();
  };
}

function fmt(v, unit) {
  if (v == null) return "—";
  if (unit === "ratio" || unit === "fraction") return `${(v * 100).toFixed(2)}%`;
  if (unit === "seconds" || unit === "s") return seconds(v);
  return `${Number(v).toPrecision(4)}${unit ? ` ${unit}` : ""}`;
}

function width(el) {
  return Math.max(280, Math.floor((el.clientWidth || el.parentElement.clientWidth || 600) - 4));
}

function timeChart(parent, title, xs, series) {
  const box = h("div.chart");
  parent.append(h("p.chart-title", title), box);
  const opts = {
    width: width(parent),
    height: 200,
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, fill: s.fill, width: 2, spanGaps: false }))],
    axes: [{}, { size: 50 }],
    scales: { x: { time: true } },
  };
  return new uPlot(opts, [xs, ...series.map((s) => s.values)], box);
}

function barChart(parent, names, series) {
  const box = h("div.chart");
  parent.append(box);
  const n = series.length;
  const bars = uPlot.paths && uPlot.paths.bars;
  const opts = {
    width: width(parent),
    height: 240,
    scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: { range: (u, min, max) => [0, Math.max(1.2, max || 0)] } },
    axes: [{ values: (u, splits) => splits.map((i) => (Number.isInteger(i) ? names[i] || "" : "")), space: 40, rotate: 0, size: 60 }, { size: 50 }],
    series: [
      { label: "objective", value: (u, i) => (i == null ? "" : names[i] || "") },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: s.stroke,
        fill: s.stroke + "99",
        width: 1,
        // grouped bars: series i sits in slot i of a 0.8-wide group centred on each objective
        paths: bars
          ? bars({
              disp: {
                x0: { unit: 1, values: () => names.map((_, j) => j - 0.4 + i * (0.8 / n)) },
                size: { unit: 1, values: () => [0.8 / n] },
              },
            })
          : undefined,
        points: { show: false },
      })),
    ],
  };
  return new uPlot(opts, [names.map((_, i) => i), ...series.map((s) => s.values)], box);
}
