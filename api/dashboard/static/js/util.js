// DOM and formatting helpers shared by the dashboard pages. Text always goes in as text nodes.

/** h("tag.class#id", {attrs}, ...children): build an element; children may be strings, nodes, arrays, null. */
export function h(spec, attrs, ...children) {
  const [tagAndClasses, id] = spec.split("#");
  const [tag, ...classes] = tagAndClasses.split(".");
  const node = document.createElement(tag || "div");
  if (id) node.id = id;
  if (classes.length) node.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = [node.className, v].filter(Boolean).join(" ");
    else if (k === "text") node.textContent = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** The viewer's time zone (shown next to times). */
export const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** An ISO time from the API in the viewer's zone, as a <time> element. */
export function time(iso, { short = false } = {}) {
  if (!iso) return h("span.na", "—");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", iso);
  return h("time", { datetime: iso, title: `${d.toISOString()} (UTC)` }, (short ? timeOnly : dateTime).format(d));
}

export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const s = Number(value);
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function duration(startIso, endIso) {
  if (!startIso) return "—";
  const end = endIso ? new Date(endIso) : new Date();
  return seconds((end - new Date(startIso)) / 1000);
}

export function money(value, currency = "USD") {
  if (value === null || value === undefined) return "—";
  return `${Number(value).toFixed(4)} ${currency}`;
}

export function badge(status) {
  const s = String(status || "unknown");
  return h(`span.badge.${s.replace(/[^a-z0-9-]/gi, "")}`, s);
}

/** An <input type=datetime-local> value (viewer's zone) -> ISO UTC for createdAtGt/Lt; "" when empty. */
export function localInputToIso(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** The "not available" line a panel shows when its endpoint answers 404. */
export function notAvailable(what) {
  return h("p.na", `${what}: not available on this server.`);
}

/** An error from the API (or elsewhere) as an alert list in place. */
export function errorList(err, id) {
  const msgs = err && err.messages && err.messages.length ? err.messages : [String(err && err.message ? err.message : err)];
  return h("ul.errors", { role: "alert", id }, msgs.map((m) => h("li", m)));
}

/** A titled panel: returns [section, body]; body is where the content goes. */
export function panel(title, { wide = false, id } = {}) {
  const hid = `h-${Math.random().toString(36).slice(2, 9)}`;
  const body = h("div.panel-body");
  const section = h(`section.panel${wide ? ".wide" : ""}`, { "aria-labelledby": hid, id }, h(`h2#${hid}`, title), body);
  return [section, body];
}

export function toast(text) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = text;
  clearTimeout(toast._t);
  toast._t = setTimeout(() => (el.textContent = ""), 4000);
}

/** A labelled form field; returns [wrapper, control]. */
export function field(label, control) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return [h("div", h("label", { for: id }, label), control), control];
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** Save a Blob as a file (for authenticated downloads). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
