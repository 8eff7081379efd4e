// The authenticated API client of the dashboard. The credential (an API key or a Supabase access
// token) lives in sessionStorage for this tab only and goes out as "Authorization: Bearer".

const KEY = "esl-controller.credential";

export class ApiError extends Error {
  constructor(status, body) {
    const msgs = messagesOf(body);
    super(msgs.join("; ") || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.messages = msgs;
  }
}

/** The API's error messages as a list (NestJS body: message is a string or a list of strings). */
export function messagesOf(body) {
  if (body == null) return [];
  if (typeof body === "string") return [body];
  const m = body.message;
  if (Array.isArray(m)) return m.map(String);
  if (m) return [String(m)];
  if (body.error) return [String(body.error)];
  return [];
}

export const auth = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY) || "null");
    } catch {
      return null;
    }
  },
  set(token, kind) {
    sessionStorage.setItem(KEY, JSON.stringify({ token, kind }));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * Call the API. Returns the decoded JSON (or a Blob with {blob: true}). Throws ApiError on >= 400;
 * a 401 also signs the tab out.
 */
export async function api(path, { method = "GET", body, query, blob = false, signal } = {}) {
  const cred = auth.get();
  const headers = { Accept: blob ? "*/*" : "application/json" };
  if (cred) headers.Authorization = `Bearer ${cred.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let url = path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
    }
    const s = qs.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const resp = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    signal,
    credentials: "omit",
  });
  if (resp.status === 401) {
    onUnauthorized();
  }
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    throw new ApiError(resp.status, data);
  }
  if (blob) return resp.blob();
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

/** Like api(), but answers null when the endpoint (or the thing) is not there: 404 or 405. */
export async function apiOptional(path, opts) {
  try {
    return await api(path, opts);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405 || err.status === 501)) {
      return null;
    }
    throw err;
  }
}

/** Check a credential by listing one assistant; true when accepted. */
export async function verifyCredential(token) {
  const resp = await fetch("/assistant?limit=1", {
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    credentials: "omit",
  });
  return resp.ok;
}
