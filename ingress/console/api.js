// Every call the console makes to the admin listener, in one module: the operator's bearer token
// (their Kubernetes token for the audience unmix-admin, kept in this tab's sessionStorage), the live
// job stream, the purge and the broadcast campaigns (POST /admin/broadcasts, GET /admin/broadcasts/<id>).

const TOKEN_KEY = "unmix-admin-token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** The listener refused the token: the page asks for it again. */
export class Unauthorized extends Error {}

/** The operator's role lacks the verb: the server's message names who and which. */
export class Forbidden extends Error {}

/** An error for a refused answer: 403's message says what is missing. */
function refusal(res, data) {
  if (res.status === 403) return new Forbidden(data.message ?? "your role does not allow this");
  return Object.assign(new Error(data.message ?? data.error ?? `HTTP ${res.status}`), { status: res.status });
}

const headers = (extra = {}) => ({ authorization: `Bearer ${token.get() ?? ""}`, ...extra });

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body ? { "content-type": "application/json" } : {}),
    ...(body ? { body: JSON.stringify(body) } : {}),
    cache: "no-store",
  });
  if (res.status === 401) throw new Unauthorized("the token was refused");
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw refusal(res, data);
  return data;
}

/** "+49 176 …" or digits: a phone number; otherwise a business-scoped user id ("DE.…"). */
export const userIds = (id) => (/^\+?[0-9][0-9 ()-]*$/.test(id.trim()) ? { phone: id.trim() } : { userId: id.trim() });

export const jobs = {
  /**
   * Follows GET /admin/jobs/events: server-sent events read from a streamed fetch (EventSource
   * cannot send the Authorization header). Calls onEvent(name, data) for `snapshot`, `job` and
   * `removed`; resolves when the stream ends, rejects on a network error or a refusal.
   */
  async follow(onEvent, signal, limit = 200) {
    const res = await fetch(`/admin/jobs/events?limit=${limit}`, { headers: headers({ accept: "text/event-stream" }), signal, cache: "no-store" });
    if (res.status === 401) throw new Unauthorized("the token was refused");
    if (!res.ok || !res.body) throw refusal(res, await res.json().catch(() => ({})));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length > 0) onEvent(event, JSON.parse(data.join("\n")));
        end = buffer.indexOf("\n\n");
      }
    }
  },
};

export const users = {
  /** What is held, as counts: {jobs, results, keyValueEntries, deadLetters, optedOut}. */
  lookup: (id) => call("POST", "/admin/users/lookup", userIds(id)),
  /** What was deleted, the same shape; the user is opted out afterwards. */
  purge: (id) => call("POST", "/admin/purge", userIds(id)),
};

/**
 * A fresh idempotency key for one composed notice: a repeated start with it (a second click, a
 * retried request) answers with the same campaign. getRandomValues, not randomUUID: the page may be
 * served over plain HTTP to another pod (admin.expose), which is no secure context.
 */
export const idempotencyKey = () => `console-${Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("")}`;

export const broadcasts = {
  /** The approved templates [{name, languageCode}], for the picker. */
  templates: async () => (await call("GET", "/admin/broadcasts/templates")).templates,
  /** Who would get what: {total, byKind: {text, template}, skipped: {optedOut, outsideWindow}, refusal?}; nothing is sent. */
  dryRun: (notice) => call("POST", "/admin/broadcasts", { ...notice, dryRun: true }),
  /** Starts the campaign (or finds the one this key started): {id, state}. */
  start: (notice, key) => call("POST", "/admin/broadcasts", { ...notice, idempotencyKey: key }),
  /** A campaign's progress: {id, state, total, sent, skipped, failed, unconfirmed, byKind: {text, template}, …}. */
  progress: (id) => call("GET", `/admin/broadcasts/${encodeURIComponent(id)}`),
};
