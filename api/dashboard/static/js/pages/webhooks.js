// Webhook logs: jobs with their attempts (paged by the API's page/limit), replay an attempt, retry a job.

import { api, apiOptional } from "../api.js";
import { badge, clear, errorList, field, h, localInputToIso, notAvailable, time, toast, TZ } from "../util.js";

const STATUSES = ["", "pending", "delivering", "delivered", "failed", "skipped"];

export async function webhooksPage(main) {
  const state = { page: 1, limit: 25 };
  const [statusField, status] = field("Status", h("select", STATUSES.map((s) => h("option", { value: s }, s || "any"))));
  const [typeField, type] = field("Message type", h("input", { type: "text", placeholder: "end-of-call-report", size: 18 }));
  const [callField, callId] = field("Call id", h("input", { type: "text", size: 36, spellcheck: "false" }));
  const [fromField, from] = field(`Created after (${TZ})`, h("input", { type: "datetime-local", step: 1 }));
  const form = h("form.form-row", { "aria-label": "Filter webhook jobs" }, statusField, typeField, callField, fromField, h("div", h("button", { type: "submit" }, "Apply")));
  const list = h("div#webhook-jobs");
  const errors = h("div");
  const prev = h("button.secondary", { type: "button" }, "Newer");
  const next = h("button.secondary", { type: "button" }, "Older");
  const info = h("span.muted");
  main.append(h("h1", "Webhook logs"), h("section.panel", { "aria-label": "Webhook jobs" }, form, errors, list, h("nav.pager", { "aria-label": "Pages" }, prev, next, info)));

  async function load() {
    let data;
    try {
      data = await apiOptional("/logs/webhooks", {
        query: {
          page: state.page,
          limit: state.limit,
          status: status.value,
          type: type.value.trim(),
          callId: callId.value.trim(),
          createdAtGt: localInputToIso(from.value),
        },
      });
    } catch (err) {
      clear(errors).append(errorList(err));
      return;
    }
    clear(errors);
    clear(list);
    if (data === null) {
      list.append(notAvailable("Webhook logs"));
      return;
    }
    const meta = data.metadata || {};
    if (!data.results.length) list.append(h("p.muted", "No webhook jobs match."));
    for (const job of data.results) list.append(jobView(job));
    prev.disabled = state.page <= 1;
    next.disabled = !meta.hasNextPage;
    info.textContent = `Page ${meta.currentPage || state.page} of ${meta.totalPages || 1} · ${meta.totalItems ?? 0} jobs`;
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.page = 1;
    load();
  });
  prev.addEventListener("click", () => {
    state.page = Math.max(1, state.page - 1);
    load();
  });
  next.addEventListener("click", () => {
    state.page += 1;
    load();
  });
  await load();
  return null;
}

function jobView(job) {
  const box = h("details.panel.job", { "data-job-id": job.id });
  const body = h("div");
  box.append(
    h(
      "summary",
      h("strong", job.type), " ", badge(job.status), " ",
      h("span.muted", job.url || ""), " · ", time(job.createdAt), " · ",
      h("span.attempt-count", `${job.attemptCount} attempt${job.attemptCount === 1 ? "" : "s"}`),
    ),
    body,
  );
  renderJob(job, body, box);
  return box;
}

function renderJob(job, body, box) {
  clear(body);
  const result = h("div", { "aria-live": "polite" });
  const facts = h(
    "dl.kv",
    h("dt", "Call"), h("dd", job.callId ? h("a", { href: `#/calls/${job.callId}` }, job.callId) : "—"),
    h("dt", "Status"), h("dd", badge(job.status)),
    h("dt", "Attempts"), h("dd", `${job.attemptCount} of ${job.maxAttempts}`),
    h("dt", "Next attempt"), h("dd", time(job.nextAttemptAt)),
    h("dt", "Delivered"), h("dd", time(job.deliveredAt)),
    h("dt", "Last error"), h("dd", job.lastError || "—"),
  );
  const actions = h("p.actions");
  if (job.status === "failed" || job.status === "skipped") {
    const retry = h("button", { type: "button" }, "Retry job");
    retry.addEventListener("click", async () => {
      clear(result);
      try {
        const fresh = await api(`/logs/webhooks/jobs/${job.id}/retry`, { method: "POST" });
        toast("Job queued again");
        update(fresh);
      } catch (err) {
        result.append(errorList(err));
      }
    });
    actions.append(retry);
  }
  const attempts = job.attempts || [];
  const table = attempts.length
    ? h(
        "div.table-wrap",
        h(
          "table.attempts",
          h("caption.muted", { style: "text-align:left" }, "Attempts"),
          h("thead", h("tr", ["#", "When", "Status", "Latency", "Error / response", ""].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            attempts.map((a) => {
              const replay = h("button.secondary", { type: "button", "aria-label": `Replay attempt ${a.number}` }, "Replay");
              replay.addEventListener("click", async () => {
                clear(result);
                replay.disabled = true;
                try {
                  const added = await api(`/logs/webhooks/${a.id}/replay`, { method: "POST" });
                  toast(`Replayed: ${added.statusCode ?? added.error ?? "sent"}`);
                  update(await api(`/logs/webhooks/${job.id}`));
                } catch (err) {
                  result.append(errorList(err));
                  replay.disabled = false;
                }
              });
              return h(
                "tr",
                { "data-attempt-id": a.id },
                h("td", String(a.number), a.replay ? h("span.badge", " replay") : null),
                h("td", time(a.createdAt)),
                h("td", a.statusCode != null ? String(a.statusCode) : "—"),
                h("td", a.latencyMs != null ? `${a.latencyMs} ms` : "—"),
                h("td", h("code", a.error || a.responseExcerpt || "")),
                h("td", replay),
              );
            }),
          ),
        ),
      )
    : h("p.muted", "No attempts yet.");
  body.append(facts, actions, result, table);

  function update(fresh) {
    box.querySelector(".attempt-count").textContent = `${(fresh.attempts || []).length} attempt${(fresh.attempts || []).length === 1 ? "" : "s"}`;
    renderJob(fresh, body, box);
  }
}
