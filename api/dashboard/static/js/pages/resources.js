// Assistants, phone numbers and tools: a paged list and a JSON editor that shows the API's 400
// validation messages in place, next to the text.

import { api, ApiError } from "../api.js";
import { clear, errorList, h, pretty, time, toast, TZ } from "../util.js";

/** Fields the server sets; they are not sent back on PATCH (the API rejects unknown fields). */
const SERVER_FIELDS = ["id", "orgId", "createdAt", "updatedAt"];

export const RESOURCES = {
  assistants: {
    title: "Assistants",
    path: "/assistant",
    label: (r) => r.name || r.id,
    extra: (r) => (r.model ? `${r.model.provider || ""} ${r.model.model || ""}`.trim() : ""),
    readOnly: [],
    template: { name: "New assistant", firstMessage: "Hello! How can I help?", model: { provider: "openai", model: "gpt-4o-mini" } },
  },
  "phone-numbers": {
    title: "Phone numbers",
    path: "/phone-number",
    label: (r) => r.number || r.sipUri || r.name || r.id,
    extra: (r) => r.provider || "",
    readOnly: ["status", "provider"],
    template: { provider: "byo-phone-number", number: "+15551230000", name: "Front desk line", numberE164CheckEnabled: true },
  },
  tools: {
    title: "Tools",
    path: "/tool",
    label: (r) => (r.function && r.function.name) || r.name || r.id,
    extra: (r) => r.type || "",
    readOnly: ["type"],
    template: { type: "function", function: { name: "lookup_booking", description: "Find a booking", parameters: { type: "object", properties: {} } } },
  },
};

export async function resourcePage(main, spec) {
  const state = { cursors: [], limit: 25, selected: null };
  const list = h("div.table-wrap");
  const listErrors = h("div");
  const prev = h("button.secondary", { type: "button", disabled: true }, "Newer");
  const next = h("button.secondary", { type: "button", disabled: true }, "Older");
  const create = h("button", { type: "button" }, `New ${spec.title.replace(/s$/, "").toLowerCase()}`);
  const editorBox = h("div");
  main.append(
    h("h1", spec.title),
    h(
      "div.grid",
      h("section.panel", { "aria-label": `${spec.title} list` }, h("p.actions", create), listErrors, list, h("nav.pager", { "aria-label": "Pages" }, prev, next)),
      h("section.panel", { "aria-labelledby": "editor-h" }, h("h2#editor-h", "Editor"), editorBox),
    ),
  );
  editorBox.append(h("p.muted", "Pick one from the list, or create a new one."));

  let rows = [];
  async function load() {
    const cursor = state.cursors[state.cursors.length - 1];
    try {
      rows = await api(spec.path, { query: { limit: state.limit, createdAtLt: cursor } });
    } catch (err) {
      clear(listErrors).append(errorList(err));
      return;
    }
    clear(listErrors);
    clear(list);
    if (!rows.length) list.append(h("p.muted", "None yet."));
    else
      list.append(
        h(
          "table",
          h("caption.muted", { style: "text-align:left" }, `Newest first; times in ${TZ}`),
          h("thead", h("tr", ["Name", "Kind", "Created"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            rows.map((r) => {
              const open = h("button.secondary", { type: "button", "data-id": r.id }, spec.label(r));
              open.addEventListener("click", () => edit(r));
              return h("tr", { class: state.selected === r.id ? "selected" : "" }, h("td", open), h("td", spec.extra(r)), h("td", time(r.createdAt)));
            }),
          ),
        ),
      );
    prev.disabled = state.cursors.length === 0;
    next.disabled = rows.length < state.limit;
  }

  function edit(row) {
    state.selected = row ? row.id : null;
    const body = {};
    const skip = new Set([...SERVER_FIELDS, ...(row ? spec.readOnly : [])]);
    for (const [k, v] of Object.entries(row || spec.template)) if (!skip.has(k)) body[k] = v;
    const textarea = h("textarea.json#json-editor", { spellcheck: "false", "aria-describedby": "json-errors json-help", rows: 20 });
    textarea.value = pretty(body);
    const errors = h("ul.errors#json-errors", { role: "alert" });
    const save = h("button", { type: "submit" }, row ? "Save changes" : "Create");
    const form = h(
      "form",
      h("p", row ? h("span", "Editing ", h("code", row.id)) : "New"),
      h("label", { for: "json-editor" }, "JSON body"),
      textarea,
      h("p.muted#json-help", row ? `PATCH ${spec.path}/${row.id}: only the fields you send change. Read-only fields are left out.` : `POST ${spec.path}`),
      errors,
      h("p.actions", save, row ? deleteButton(row) : null),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clear(errors);
      textarea.removeAttribute("aria-invalid");
      let parsed;
      try {
        parsed = JSON.parse(textarea.value);
      } catch (err) {
        errors.append(h("li", `Not valid JSON: ${err.message}`));
        textarea.setAttribute("aria-invalid", "true");
        textarea.focus();
        return;
      }
      try {
        const saved = await api(row ? `${spec.path}/${row.id}` : spec.path, { method: row ? "PATCH" : "POST", body: parsed });
        toast(row ? "Saved" : "Created");
        await load();
        edit(saved);
      } catch (err) {
        const msgs = err instanceof ApiError ? err.messages : [String(err)];
        for (const m of msgs.length ? msgs : [`HTTP ${err.status}`]) errors.append(h("li", m));
        textarea.setAttribute("aria-invalid", "true");
        textarea.focus();
      }
    });
    clear(editorBox).append(form);
    textarea.focus();
    for (const tr of list.querySelectorAll("tr")) tr.classList.toggle("selected", !!row && !!tr.querySelector(`[data-id="${row.id}"]`));
  }

  function deleteButton(row) {
    const b = h("button.danger", { type: "button" }, "Delete");
    b.addEventListener("click", async () => {
      if (!confirm(`Delete ${spec.label(row)}?`)) return;
      try {
        await api(`${spec.path}/${row.id}`, { method: "DELETE" });
        toast("Deleted");
        clear(editorBox).append(h("p.muted", "Deleted."));
        await load();
      } catch (err) {
        editorBox.append(errorList(err));
      }
    });
    return b;
  }

  create.addEventListener("click", () => edit(null));
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
  return null;
}
