// Calls list: filters (status, assistant, created between), limit paging by createdAtLt, live refresh.

import { api, ApiError } from "../api.js";
import { badge, clear, duration, errorList, field, h, localInputToIso, time, TZ } from "../util.js";

const STATUSES = ["", "scheduled", "queued", "ringing", "in-progress", "forwarding", "ended"];
const REFRESH_MS = 5000;

export async function callsPage(main) {
  const state = { cursors: [], limit: 25 };
  const [statusField, status] = field("Status", h("select", STATUSES.map((s) => h("option", { value: s }, s || "any"))));
  const [assistantField, assistant] = field("Assistant", h("select", h("option", { value: "" }, "any")));
  const [fromField, from] = field(`Created after (${TZ})`, h("input", { type: "datetime-local", step: 1 }));
  const [toField, to] = field(`Created before (${TZ})`, h("input", { type: "datetime-local", step: 1 }));
  const [limitField, limit] = field("Per page", h("select", [10, 25, 50, 100].map((n) => h("option", { value: n, selected: n === state.limit }, n))));
  const live = h("input", { type: "checkbox", checked: true, id: "live-refresh" });
  const form = h(
    "form.form-row",
    { "aria-label": "Filter calls" },
    statusField, assistantField, fromField, toField, limitField,
    h("div", h("button", { type: "submit" }, "Apply")),
    h("div", h("label", { for: "live-refresh" }, live, " Live refresh")),
  );
  const body = h("div.table-wrap");
  const errors = h("div");
  const prev = h("button.secondary", { type: "button", disabled: true }, "Newer");
  const next = h("button.secondary", { type: "button", disabled: true }, "Older");
  const pageInfo = h("span.muted");
  const updated = h("span.muted", { "aria-live": "off" });
  main.append(
    h("h1", "Calls"),
    h("section.panel", { "aria-label": "Calls" }, form, errors, body, h("nav.pager", { "aria-label": "Pages" }, prev, next, pageInfo, updated)),
  );

  api("/assistant", { query: { limit: 1000 } })
    .then((rows) => {
      for (const a of rows) assistant.append(h("option", { value: a.id }, a.name || a.id));
    })
    .catch(() => {});

  function query() {
    const q = { limit: state.limit, status: status.value, assistantId: assistant.value };
    const gt = localInputToIso(from.value);
    if (gt) q.createdAtGt = gt;
    const cursor = state.cursors[state.cursors.length - 1];
    const lt = localInputToIso(to.value);
    q.createdAtLt = cursor || lt || undefined;
    return q;
  }

  let rows = [];
  async function load() {
    try {
      rows = await api("/call", { query: query() });
    } catch (err) {
      clear(errors).append(errorList(err));
      return;
    }
    clear(errors);
    render();
  }

  function render() {
    clear(body);
    if (!rows.length) {
      body.append(h("p.muted", state.cursors.length ? "No older calls." : "No calls match."));
    } else {
      body.append(
        h(
          "table#calls-table",
          h("caption.muted", { style: "text-align:left" }, `Newest first; times in ${TZ}`),
          h("thead", h("tr", ["Created", "Status", "Type", "Customer / name", "Duration", "Ended reason"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            rows.map((c) =>
              h(
                "tr",
                { "data-call-id": c.id },
                h("td", h("a", { href: `#/calls/${c.id}` }, time(c.createdAt))),
                h("td", badge(c.status)),
                h("td", c.type),
                h("td", (c.customer && (c.customer.number || c.customer.sipUri)) || c.name || "—"),
                h("td", c.startedAt ? duration(c.startedAt, c.endedAt) : "—"),
                h("td", c.endedReason || ""),
              ),
            ),
          ),
        ),
      );
    }
    prev.disabled = state.cursors.length === 0;
    next.disabled = rows.length < state.limit;
    pageInfo.textContent = `Page ${state.cursors.length + 1}`;
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.limit = Number(limit.value);
    state.cursors = [];
    load();
  });
  next.addEventListener("click", () => {
    if (!rows.length) return;
    state.cursors.push(rows[rows.length - 1].createdAt);
    load();
  });
  prev.addEventListener("click", () => {
    state.cursors.pop();
    load();
  });

  await load();
  const timer = setInterval(() => {
    if (live.checked && document.visibilityState === "visible") load().catch((e) => e instanceof ApiError || console.error(e));
  }, REFRESH_MS);
  return () => clearInterval(timer);
}
