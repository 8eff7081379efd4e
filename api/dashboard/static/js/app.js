// The dashboard shell: login, navigation and hash routing (#/calls, #/calls/<id>, #/webhooks, ...).

import { auth, setUnauthorizedHandler, verifyCredential } from "./api.js";
import { clear, field, h } from "./util.js";
import { callsPage } from "./pages/calls.js";
import { callPage } from "./pages/call.js";
import { webhooksPage } from "./pages/webhooks.js";
import { resourcePage, RESOURCES } from "./pages/resources.js";
import { analyticsPage } from "./pages/analytics.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const logoutButton = document.getElementById("logout");
let config = { supabaseEnabled: false };
let cleanup = null; // the current page's stop function (timers, sockets, audio)

const ROUTES = [
  [/^#\/calls\/([0-9a-f-]{36})$/i, (m) => callPage(main, m[1])],
  [/^#\/calls$/, () => callsPage(main)],
  [/^#\/webhooks$/, () => webhooksPage(main)],
  [/^#\/(assistants|phone-numbers|tools)$/, (m) => resourcePage(main, RESOURCES[m[1]])],
  [/^#\/analytics$/, () => analyticsPage(main)],
];

function pathOf(hash) {
  return (hash || "").split("?")[0];
}

async function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.error(err);
    }
    cleanup = null;
  }
  if (!auth.get()) {
    showLogin();
    return;
  }
  nav.hidden = false;
  logoutButton.hidden = false;
  let hash = pathOf(location.hash);
  if (!hash || hash === "#" || hash === "#/") {
    location.replace("#/calls");
    return;
  }
  for (const a of nav.querySelectorAll("a")) {
    const here = hash === a.getAttribute("href") || hash.startsWith(`${a.getAttribute("href")}/`);
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  clear(main);
  for (const [re, render] of ROUTES) {
    const m = hash.match(re);
    if (m) {
      cleanup = (await render(m)) || null;
      return;
    }
  }
  main.append(h("h1", "Not found"), h("p", h("a", { href: "#/calls" }, "Go to the calls list")));
}

function showLogin(message) {
  nav.hidden = true;
  logoutButton.hidden = true;
  clear(main);
  const [keyField, keyInput] = field("API key", h("input", { type: "password", autocomplete: "off", required: true, spellcheck: "false" }));
  const errors = h("ul.errors#login-errors", { role: "alert" });
  if (message) errors.append(h("li", message));
  const form = h(
    "form.panel.login",
    { "aria-labelledby": "login-h" },
    h("h1#login-h", "Sign in"),
    h("p.muted", "Use an API key (esl-controller keys create --name ops). It is kept in this tab only."),
    keyField,
    errors,
    h("p", h("button", { type: "submit" }, "Sign in")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await signIn(keyInput.value.trim(), "api-key", errors);
  });
  main.append(form);
  if (config.supabaseEnabled) {
    const [tokField, tokInput] = field("Supabase access token", h("textarea", { rows: 3, spellcheck: "false" }));
    const sErrors = h("ul.errors", { role: "alert" });
    const sForm = h(
      "form.panel.login#supabase-login",
      { "aria-labelledby": "sb-h" },
      h("h2#sb-h", "Or use a Supabase session"),
      h("p.muted", "Sign in through your Supabase project with this page as the redirect URL, or paste a session's access token."),
      tokField,
      sErrors,
      h("p", h("button", { type: "submit", class: "secondary" }, "Use Supabase session")),
    );
    sForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await signIn(tokInput.value.trim(), "supabase", sErrors);
    });
    main.append(sForm);
  }
  keyInput.focus();
}

async function signIn(token, kind, errors) {
  clear(errors);
  if (!token) {
    errors.append(h("li", "Enter a credential."));
    return;
  }
  let ok = false;
  try {
    ok = await verifyCredential(token);
  } catch (err) {
    errors.append(h("li", `The server did not answer: ${err.message}`));
    return;
  }
  if (!ok) {
    errors.append(h("li", "The server did not accept that credential."));
    return;
  }
  auth.set(token, kind);
  if (!location.hash || location.hash.startsWith("#access_token")) location.hash = "#/calls";
  await route();
}

/** A Supabase redirect (magic link, OAuth) lands with #access_token=...&token_type=bearer. */
async function supabaseRedirect() {
  if (!config.supabaseEnabled || !location.hash.startsWith("#access_token=")) return false;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("access_token");
  history.replaceState(null, "", `${location.pathname}#/calls`);
  if (token && (await verifyCredential(token))) {
    auth.set(token, "supabase");
    return true;
  }
  return false;
}

async function start() {
  try {
    const resp = await fetch("config.json", { credentials: "omit" });
    if (resp.ok) config = await resp.json();
  } catch (err) {
    console.warn("no dashboard config", err);
  }
  await supabaseRedirect();
  setUnauthorizedHandler(() => {
    auth.clear();
    showLogin("Your session ended or the credential was revoked: sign in again.");
  });
  logoutButton.addEventListener("click", () => {
    auth.clear();
    if (cleanup) cleanup();
    cleanup = null;
    showLogin();
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
