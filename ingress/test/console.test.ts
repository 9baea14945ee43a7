// The support console's server side, in process (no stack): the masked number, the rows the page
// shows, the page's files and their headers, the live stream (GET /admin/jobs/events) over a
// stand-in for the API server's list and watch, and the TRACING_UI_URL setting.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { API_VERSION, KIND, type Sender, type SeparationJob, separationJobName, TRACEPARENT_ANNOTATION, USER_LABEL } from "@unmix/api/separationjob";
import { ConfigError } from "@unmix/core/config";
import type { Listing, SeparationJobs, WatchEvent } from "@unmix/core/kube";
import { maskNumber } from "@unmix/core/privacy";
import Fastify, { type FastifyInstance } from "fastify";
import { type AdminOptions, adminRoutes } from "../src/admin.ts";
import { adminAuth } from "../src/admin-auth.ts";
import { parseIngressConfig } from "../src/config.ts";
import { CONSOLE_CSP, CONSOLE_FILES, consoleRoutes } from "../src/console.ts";
import { jobRow } from "../src/job-rows.ts";

const TOKEN = "unit-admin-token-0123456789";
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";

function sj(name: string, o: { created: string; conditions?: [string, string, string][]; steps?: Record<string, string>; failure?: string }): SeparationJob {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name,
      creationTimestamp: o.created,
      labels: { [USER_LABEL]: "u0123456789abcdef01234567" },
      annotations: { [TRACEPARENT_ANNOTATION]: `00-${TRACE_ID}-00f067aa0ba902b7-01` },
    },
    spec: {
      message: { timestamp: o.created, phoneNumberId: "1234" },
      media: { id: "m1", mimeType: "audio/ogg; codecs=opus", sha256: "abc", kind: "audio", voice: true },
      output: { format: "ogg-opus" },
    },
    status: {
      conditions: (o.conditions ?? []).map(([type, status, reason]) => ({
        type,
        status: status as "True",
        reason,
        message: "",
        lastTransitionTime: o.created,
      })),
      ...(o.steps ? { steps: o.steps } : {}),
      ...(o.failure ? { failure: { class: o.failure as "BadInput", message: "x" } } : {}),
    },
  };
}

describe("the masked number", () => {
  test("shows the first two and the last two digits, whatever the number's layout", () => {
    assert.equal(maskNumber("4917623456789"), "+49 ••• ••• 89");
    assert.equal(maskNumber("+49 176 2345-6778"), "+49 ••• ••• 78");
    assert.equal(maskNumber("14155550123"), "+14 ••• ••• 23");
    for (const n of ["4917623456789", "14155550123"]) {
      const masked = maskNumber(n);
      assert.ok(!masked.includes(n.slice(2, -2)), "the middle digits are not shown");
      assert.equal(masked.replace(/\D/g, "").length, 4, "four digits in all");
    }
  });

  test("a number too short to mask safely shows no digit", () => {
    assert.equal(maskNumber("1234567"), "+•••");
    assert.equal(maskNumber(""), "+•••");
  });
});

describe("a SeparationJob as a console row", () => {
  const sender: Sender = { messageId: "wamid.X", waId: "4917623456789", profileName: "Zoë Müller" };

  test("a running job: the step it waits in, with its reason, the timings so far, the name and masked number, the trace link", () => {
    const row = jobRow(
      sj("sj-a", {
        created: "2026-12-02T10:00:00Z",
        conditions: [
          ["MediaFetched", "True", "Fetched"],
          ["JobCreated", "True", "Created"],
          ["Scheduled", "False", "Unschedulable"],
          ["Succeeded", "Unknown", "Running"],
        ],
        steps: { fetchedAt: "2026-12-02T10:00:01.250Z", jobCreatedAt: "2026-12-02T10:00:02Z" },
      }),
      sender,
      "https://traces.example/trace/{traceId}?from=console",
    );
    assert.deepEqual(
      [row.state, row.step, row.stepReason, row.profileName, row.number, row.kind, row.format],
      ["running", "Scheduled", "Unschedulable", "Zoë Müller", "+49 ••• ••• 89", "audio", "ogg-opus"],
    );
    assert.deepEqual(row.timings, { MediaFetched: 1.3, JobCreated: 2 });
    assert.equal(row.traceId, TRACE_ID);
    assert.equal(row.traceUrl, `https://traces.example/trace/${TRACE_ID}?from=console`);
    assert.ok(!JSON.stringify(row).includes("4917623456789"), "the number itself is not in the row");
    assert.ok(!JSON.stringify(row).includes("wamid"), "nor the message id");
  });

  test("succeeded: no step; failed: the step it stopped at and the failure class; no sender Secret (the reply is out): no name or number; no trace link without TRACING_UI_URL", () => {
    const done = jobRow(
      sj("sj-b", {
        created: "2026-12-02T10:00:00Z",
        conditions: ["MediaFetched", "JobCreated", "Scheduled", "Separated", "Replied", "Succeeded"].map((t) => [t, "True", "Done"]),
        steps: { finishedAt: "2026-12-02T10:00:12Z" },
      }),
      undefined,
    );
    assert.deepEqual([done.state, done.step, done.profileName, done.number, done.traceUrl, done.timings.Finished], ["succeeded", null, null, null, null, 12]);
    const failed = jobRow(
      sj("sj-c", {
        created: "2026-12-02T10:00:00Z",
        conditions: [
          ["MediaFetched", "True", "Fetched"],
          ["JobCreated", "True", "Created"],
          ["Scheduled", "True", "Scheduled"],
          ["Separated", "False", "BadInput"],
          ["Succeeded", "False", "BadInput"],
        ],
        failure: "BadInput",
      }),
      sender,
    );
    assert.deepEqual([failed.state, failed.step, failed.stepReason, failed.failure, failed.status], ["failed", "Separated", "BadInput", "BadInput", "False"]);
  });
});

describe("the page and its files", () => {
  let app: FastifyInstance;
  after(() => app?.close());

  test("GET /console: the page with a strict CSP, no inline script or style, and every file it names served with its type and the same headers, without a token", async () => {
    app = Fastify();
    await app.register(adminAuth, { mode: "static-token", token: TOKEN });
    await app.register(consoleRoutes);
    app.get("/admin/jobs", { config: { permission: "list" } }, async () => ({ jobs: [] }));
    assert.equal((await app.inject({ url: "/admin/jobs" })).statusCode, 401, "the data beside the page still needs a token");
    const page = await app.inject({ url: "/console" });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers["content-type"]), /^text\/html/);
    assert.equal(page.headers["content-security-policy"], CONSOLE_CSP);
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"])
      assert.ok(CONSOLE_CSP.includes(d), d);
    assert.ok(!/unsafe-inline|unsafe-eval|https?:/.test(CONSOLE_CSP), "nothing inline, nothing from elsewhere");
    assert.equal(page.headers["x-content-type-options"], "nosniff");
    const html = page.body;
    assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), "every script has a src");
    assert.ok(!/\son[a-z]+=/i.test(html), "no inline event handler");
    assert.ok(!/\sstyle=/i.test(html) && !/<style/i.test(html), "no inline style");
    assert.ok(!/https?:\/\//.test(html), "nothing from a CDN");
    // every label names a control that exists
    for (const [, id] of html.matchAll(/<label for="([^"]+)"/g)) assert.ok(html.includes(`id="${id}"`), `label for ${id}`);
    const named = [...html.matchAll(/(?:src|href)="\/console\/([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(named.sort(), ["console.css", "console.js", "icon.svg"]);
    for (const name of CONSOLE_FILES) {
      const r = await app.inject({ url: `/console/${name}` });
      assert.equal(r.statusCode, 200, name);
      assert.match(
        String(r.headers["content-type"]),
        { js: /^text\/javascript/, css: /^text\/css/, svg: /^image\/svg\+xml/ }[name.split(".")[1] as "js"],
        name,
      );
      assert.equal(r.headers["content-security-policy"], CONSOLE_CSP, name);
    }
    // console.js imports api.js: served too
    assert.match((await app.inject({ url: "/console/console.js" })).body, /from "\.\/api\.js"/);
    // nothing else is public, and nothing else is there even for an operator
    for (const url of ["/console/../src/admin.ts", "/console/%2e%2e/package.json", "/console/index.html.bak", "/console/admin.ts"]) {
      assert.equal((await app.inject({ url })).statusCode, 401, url);
      assert.equal((await app.inject({ url, headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 404, url);
    }
  });
});

/** A stand-in for the API server: one page to list, then the changes a test pushes through the watch. */
function fakeJobs(items: SeparationJob[], senders: Record<string, Sender>) {
  let push: ((e: WatchEvent) => void) | undefined;
  let end: ((err?: unknown) => void) | undefined;
  let watchedFrom: string | undefined;
  let aborted = 0;
  const jobs = {
    async *pages(): AsyncGenerator<Listing> {
      yield { items, invalid: [{ name: "sj-bad", problems: ["spec: invalid_type"] }], resourceVersion: "42" };
    },
    async sender(name: string) {
      return senders[name];
    },
    async watch(rv: string | undefined, onEvent: (e: WatchEvent) => void, done: (err?: unknown) => void) {
      watchedFrom = rv;
      push = onEvent;
      end = done;
      return () => {
        aborted++;
      };
    },
  };
  return {
    jobs: jobs as unknown as SeparationJobs,
    push: (e: WatchEvent) => push?.(e),
    end: () => end?.(),
    watchedFrom: () => watchedFrom,
    aborted: () => aborted,
  };
}

/** Server-sent events of a streamed response: `read(until)` collects more until `until` says stop or the stream ends. */
function eventsOf(res: Response) {
  const events: { event: string; data: unknown }[] = [];
  const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let ended = false;
  return {
    events,
    ended: () => ended,
    async read(until: (events: { event: string; data: unknown }[]) => boolean) {
      while (!ended && !until(events)) {
        const { value, done } = await reader.read();
        if (done) ended = true;
        buffer += value ?? "";
        for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
          const frame = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          const event = /^event: (.*)$/m.exec(frame)?.[1];
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
      }
    },
  };
}

describe("GET /admin/jobs/events", () => {
  const created = "2026-12-02T10:00:00Z";
  const a = sj("sj-a", { created, conditions: [["Succeeded", "Unknown", "Running"]] });
  const senders: Record<string, Sender> = { "sj-a": { messageId: "wamid.A", waId: "4917623456789", profileName: "Zoë Müller" } };
  const audit: { action?: string; outcome?: string; counts?: Record<string, number> }[] = [];

  async function admin(fake: ReturnType<typeof fakeJobs>, extra: Partial<AdminOptions> = {}) {
    const app = Fastify();
    await app.register(adminAuth, { mode: "static-token", token: TOKEN });
    await app.register(adminRoutes, {
      jobs: fake.jobs,
      nats: {
        audit: async (fields: (typeof audit)[number]) => {
          audit.push(fields);
          return { duplicate: false };
        },
      },
      keepAliveMs: 50,
      ...extra,
    } as unknown as AdminOptions);
    await app.listen({ host: "127.0.0.1", port: 0 });
    const { port } = app.server.address() as { port: number };
    return { app, url: `http://127.0.0.1:${port}` };
  }

  test("refuses a missing token; then a snapshot, each change in order as a row, a deletion, and the end when the watch ends; audited with the counts", async () => {
    const fake = fakeJobs([a], senders);
    const { app, url } = await admin(fake);
    try {
      assert.equal((await fetch(`${url}/admin/jobs/events`)).status, 401);
      const res = await fetch(`${url}/admin/jobs/events?limit=10`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.status, 200);
      assert.match(String(res.headers.get("content-type")), /^text\/event-stream/);
      const stream = eventsOf(res);
      await stream.read((e) => e.length >= 1);
      const snapshot = stream.events[0] as { event: string; data: { invalid: number; jobs: { name: string; profileName: string; number: string }[] } };
      assert.equal(snapshot.event, "snapshot");
      assert.equal(snapshot.data.invalid, 1);
      assert.deepEqual(
        snapshot.data.jobs.map((j) => [j.name, j.profileName, j.number]),
        [["sj-a", "Zoë Müller", "+49 ••• ••• 89"]],
      );
      assert.equal(fake.watchedFrom(), "42", "the watch starts where the list was taken: nothing in between is missed");

      const b = sj(separationJobName("wamid.B"), { created: "2026-12-02T10:01:00Z" });
      fake.push({ type: "ADDED", sj: b });
      fake.push({ type: "MODIFIED", sj: sj("sj-a", { created, conditions: [["Succeeded", "True", "Replied"]] }) });
      fake.push({ type: "DELETED", sj: b });
      fake.end();
      await stream.read(() => false);
      assert.equal(stream.ended(), true, "the stream ends with the watch");
      assert.deepEqual(
        stream.events.slice(1).map((e) => [e.event, (e.data as { name: string }).name, (e.data as { state?: string }).state]),
        [
          ["job", b.metadata.name, "running"],
          ["job", "sj-a", "succeeded"],
          ["removed", b.metadata.name, undefined],
        ],
      );
      assert.equal(fake.aborted(), 1);
      const entries = audit.filter((e) => e.action === "watch-jobs");
      assert.deepEqual(
        entries.map((e) => [e.outcome, e.counts]),
        [
          ["started", undefined],
          ["done", { jobs: 1, events: 3 }],
        ],
      );
    } finally {
      await app.close();
    }
  });

  test("closing the listener ends an open stream (the close does not wait for it) and stops its watch", async () => {
    const fake = fakeJobs([a], senders);
    const { app, url } = await admin(fake);
    const res = await fetch(`${url}/admin/jobs/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const stream = eventsOf(res);
    await stream.read((e) => e.length >= 1);
    assert.equal(stream.events[0]?.event, "snapshot");
    await app.close();
    await stream.read(() => false);
    assert.equal(stream.ended(), true);
    assert.equal(fake.aborted(), 1);
  });

  test("a trace id links to TRACING_UI_URL when it is set", async () => {
    const fake = fakeJobs([a], senders);
    const { app, url } = await admin(fake, { tracingUiUrl: "https://jaeger.example/trace/{traceId}" });
    try {
      const res = await fetch(`${url}/admin/jobs?limit=5`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const { jobs } = (await res.json()) as { jobs: { traceUrl: string }[] };
      assert.equal(jobs[0]?.traceUrl, `https://jaeger.example/trace/${TRACE_ID}`);
    } finally {
      await app.close();
    }
  });
});

describe("TRACING_UI_URL", () => {
  const env = {
    ROLE: "worker",
    USER_KEY_SECRET: "k".repeat(32),
    INBOUND_SIGNING_KEY: "s".repeat(32),
    WHATSAPP_ACCESS_TOKEN: "EAAG-token",
    S3_ENDPOINT: "http://127.0.0.1:9000",
    S3_BUCKET: "unmix",
    S3_ACCESS_KEY: "a",
    S3_SECRET_KEY: "s",
  };

  test("optional; a URL with the {traceId} placeholder, or start-up stops naming it", () => {
    assert.equal(parseIngressConfig(env).TRACING_UI_URL, undefined);
    assert.equal(
      parseIngressConfig({ ...env, TRACING_UI_URL: "https://grafana.example/explore?trace={traceId}" }).TRACING_UI_URL,
      "https://grafana.example/explore?trace={traceId}",
    );
    for (const bad of ["https://grafana.example/explore", "not a url"])
      assert.throws(
        () => parseIngressConfig({ ...env, TRACING_UI_URL: bad }),
        (err: Error) => err instanceof ConfigError && /TRACING_UI_URL/.test(err.message),
      );
  });
});
