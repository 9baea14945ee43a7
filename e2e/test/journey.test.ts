// End to end, as a user lives it: the real local stack (kube-apiserver, the real Job controller and
// scheduler, a GPU node running the job image as a local process, NATS JetStream, MinIO), the
// WhatsApp simulator, the ingress and the controller as child processes, and the real job image
// (`unmix-job` on CPU with a model that really removes music: htdemucs when its weights are in the
// cache, else DeepFilterNet3). One product for the whole file; few separations.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MODELS, modelId } from "@unmix/api/models";
import { separationJobName, TRACEPARENT_ANNOTATION } from "@unmix/api/separationjob";
import { AUDIT_STREAM, type AuditEntry, messageRef } from "@unmix/core/audit";
import { k8s } from "@unmix/core/kube";
import { userKey } from "@unmix/core/privacy";
import { replies } from "@unmix/core/replies";
import { connect } from "nats";
import type { ReceivedSpan } from "../src/otlp-receiver.ts";
import { findLeaks, personalForms } from "../src/personal-data.ts";
import { type Product, startProduct, USER_KEY_SECRET, until } from "../src/product.ts";
import { scoreReply, speechOverMusic } from "../src/quality.ts";
import { type GeneratedMedia, makeMedia, probe, streamMd5 } from "../src/test-media.ts";
import type { SentMessage } from "../src/whatsapp-sim/index.ts";

let p: Product;
let user: string;

before(async () => {
  // the garbage collector runs every 2 s, so the moved clock's expiry shows at once
  p = await startProduct({ gpus: 1, controllerEnv: { GC_INTERVAL_SECONDS: "2" } });
  user = userKey(p.sim.defaultUser.waId as string, USER_KEY_SECRET);
});
after(async () => p?.stop());

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

// OTLP span kinds
const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;

/** The trace id of a message, from its SeparationJob's annotation. */
async function traceOf(wamid: string): Promise<string> {
  const traceparent = (await p.sjs.get(separationJobName(wamid)))?.metadata.annotations?.[TRACEPARENT_ANNOTATION];
  assert.ok(traceparent, "the SeparationJob carries the message's trace context");
  return traceparent.split("-")[1] as string;
}

/** Every object in the bucket, sorted. */
async function objects(): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of p.store.list("")) keys.push(o.key);
  return keys.sort();
}

/** What the cache holds for one result this user received: the result and their owner marker. */
const cached = (bytes: Buffer, format: string) => {
  const model = modelId(p.model.name);
  return [`owners/${user}/${sha(bytes)}.${format}.${model}`, `results/${sha(bytes)}/${format}.${model}`];
};

async function send(m: GeneratedMedia, options: { duplicates?: number } = {}) {
  const t0 = Date.now();
  const sent = await p.sim.sendUserMessage(
    { type: m.type, bytes: m.bytes, mimeType: m.mimeType, ...(m.type === "audio" ? { voice: m.voice ?? false } : {}) } as never,
    options,
  );
  return { ...sent, t0 };
}

/** The bot's reply (not a reaction) quoting `wamid`. */
const reply = (wamid: string, timeoutMs = 120_000) => p.sim.waitForMessage((m) => m.replyTo === wamid && m.type !== "reaction", timeoutMs);
const repliesTo = (wamid: string): SentMessage[] => p.sim.sentMessages().filter((m) => m.replyTo === wamid && m.type !== "reaction");

async function jobCount(): Promise<number> {
  return (await p.batch.listNamespacedJob({ namespace: p.namespace })).items.length;
}

/** Waits until the SeparationJob has finished (Succeeded True or False). */
const finished = (wamid: string) =>
  until(
    `SeparationJob of ${wamid} to finish`,
    async () => {
      const sj = await p.sjs.get(separationJobName(wamid));
      const s = sj?.status?.conditions?.find((c) => c.type === "Succeeded")?.status;
      return s === "True" || s === "False" ? sj : undefined;
    },
    120_000,
  );

describe("a voice note", () => {
  let note: GeneratedMedia;
  let first: { id: string; ms: number; reply: SentMessage };

  test("comes back as an OGG/Opus voice note quoted on the original, and nothing but the cache entry is left", async () => {
    note = makeMedia("voice", 4, 1);
    const sent = await send(note);
    const r = await reply(sent.id);
    first = { id: sent.id, ms: Date.now() - sent.t0, reply: r };
    assert.equal(r.type, "audio");
    assert.equal(r.voice, true);
    assert.equal(r.replyTo, sent.id);
    const media = p.sim.media(r.mediaId as string);
    assert.ok(media, "the replied media is on WhatsApp");
    const info = probe(media.bytes);
    assert.equal(info.format.format_name, "ogg");
    assert.deepEqual(
      info.streams.map((s) => s.codec_name),
      ["opus"],
    );
    await finished(sent.id);
    // no input, no intermediate: the result and its owner marker only (P11, P12)
    assert.deepEqual(await objects(), cached(note.bytes, "ogg-opus"));
  });

  test("P5: its audit trail holds each step once, from the webhook to the deleted input, by ref and with nothing personal", async () => {
    const nc = await connect(p.stack.nats?.connectOptions("operator"));
    try {
      const jsm = await nc.jetstreamManager();
      const ref = messageRef(first.id);
      const read = async () => {
        const info = await jsm.streams.info(AUDIT_STREAM);
        const all: (AuditEntry & { raw: string })[] = [];
        for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
          const m = await jsm.streams.getMessage(AUDIT_STREAM, { seq }).catch(() => undefined);
          if (m) all.push({ ...m.json<AuditEntry>(), raw: m.string() });
        }
        return all;
      };
      const mine = await until("the message's entries", async () => {
        const e = (await read()).filter((x) => x.ref === ref);
        return e.length >= 5 ? e : undefined;
      });
      assert.deepEqual(
        mine.map((e) => [e.event, e.outcome ?? e.reason]),
        [
          ["received", undefined],
          ["handled", "job_created"],
          ["job-created", undefined],
          ["replied", "sent"],
          ["input-deleted", "finished"],
        ],
      );
      const sender = p.sim.defaultUser;
      for (const e of await read())
        for (const secret of [sender.waId, sender.name, "wamid.", user].filter((x): x is string => !!x))
          assert.ok(!e.raw.includes(secret), `no ${secret} in ${e.raw}`);
    } finally {
      await nc.close();
    }
  });

  test("one trace id follows the message through the webhook, the worker, the controller and the job pod", async () => {
    const sj = await p.sjs.get(separationJobName(first.id));
    const traceparent = sj?.metadata.annotations?.[TRACEPARENT_ANNOTATION];
    assert.ok(traceparent, "the SeparationJob carries the message's trace context");
    const traceId = traceparent.split("-")[1] as string;
    const services = await until(
      "spans of every hop",
      () => {
        const s = new Set(p.otlp.spans.filter((x) => x.traceId === traceId).map((x) => x.service));
        return ["unmix-ingress-all", "unmix-controller", "unmix-job"].every((n) => s.has(n)) ? s : undefined;
      },
      20_000,
    ).catch(() => new Set(p.otlp.spans.filter((x) => x.traceId === traceId).map((x) => x.service)));
    assert.deepEqual([...services].sort(), ["unmix-controller", "unmix-ingress-all", "unmix-job"]);
    const names = p.otlp.spans.filter((x) => x.traceId === traceId).map((x) => `${x.service}: ${x.name}`);
    // the webhook's receive and the worker's handling are both in it
    assert.ok(
      names.some((n) => /webhook/i.test(n)),
      `a webhook span in ${names.join(", ")}`,
    );
    assert.ok(
      names.some((n) => /unmix-ingress-all: .*(worker|process|handle)/i.test(n)),
      `a worker span in ${names.join(", ")}`,
    );
    // the job pod's spans belong to this trace only (its job span is a child of the controller's context)
    const jobSpans = p.otlp.spans.filter((x) => x.service === "unmix-job" && x.name === "unmix-job");
    assert.equal(jobSpans.filter((x) => x.traceId === traceId).length, 1);
  });

  test("the trace holds the instrumentations' spans, named after what happened: HTTP, Fastify, JetStream, the Graph API", async () => {
    const traceId = await traceOf(first.id);
    // the controller's reply is among the last spans to arrive
    const spans = await until(
      "the reply's Graph API span",
      () => {
        const all = p.otlp.spans.filter((x) => x.traceId === traceId);
        return all.some((x) => x.service === "unmix-controller" && x.kind === CLIENT && /^POST \/v[\d.]+\/\{id\}\/messages$/.test(x.name)) ? all : undefined;
      },
      20_000,
    );
    const names = spans.map((x) => `${x.service}: ${x.name}`).join("\n");
    const one = (what: string, f: (x: ReceivedSpan) => boolean) => {
      const found = spans.find(f);
      assert.ok(found, `${what} in:\n${names}`);
      return found;
    };
    // the HTTP server span is Fastify's request span, named by its route; then its hooks (the
    // signature check runs as preValidation) and the route's handler
    const server = one("the webhook's HTTP server span", (x) => x.kind === SERVER && x.name === "POST /webhook");
    assert.equal(server.service, "unmix-ingress-all");
    assert.equal(server.attributes["fastify.root"], "@fastify/otel");
    assert.equal(server.attributes["http.route"], "/webhook");
    assert.equal(server.attributes["http.request.method"], "POST");
    assert.equal(server.attributes["url.path"], "/webhook");
    assert.equal(server.attributes["http.response.status_code"], 200);
    const hook = one("Fastify's preValidation hook span", (x) => x.name === "preValidation - checkSignature" && x.attributes["http.route"] === "/webhook");
    assert.equal(hook.parentSpanId, server.spanId);
    one("Fastify's handler span", (x) => /^handler - /.test(x.name) && x.parentSpanId === server.spanId);
    // JetStream, after the messaging conventions; the consumer continues the producer's context
    const publish = one("the JetStream publish", (x) => x.kind === PRODUCER && x.name === "publish unmix.inbound.{user}");
    const consume = one("the worker's consume", (x) => x.kind === CONSUMER && x.name === "process unmix.inbound.{user}");
    for (const [span, type] of [
      [publish, "send"],
      [consume, "process"],
    ] as const) {
      assert.equal(span.attributes["messaging.system"], "nats");
      assert.equal(span.attributes["messaging.destination.name"], `unmix.inbound.${user}`);
      assert.equal(span.attributes["messaging.operation.type"], type);
      assert.equal(span.attributes["messaging.message.id"], undefined, "Nats-Msg-Id is the wamid: not recorded");
    }
    assert.equal(consume.parentSpanId, publish.spanId);
    assert.equal(consume.attributes["messaging.consumer.group.name"], "worker");
    // HTTP clients: the worker creating the SeparationJob; the controller on the Graph API (fetch)
    one(
      "the SeparationJob create",
      (x) => x.service === "unmix-ingress-all" && x.kind === CLIENT && /^POST \/apis\/unmix\.dev\/v1alpha1\/namespaces\/unmix\/separationjobs$/.test(x.name),
    );
    const send = one("the reply's Graph API call", (x) => x.service === "unmix-controller" && x.kind === CLIENT && /\/messages$/.test(x.name));
    assert.equal(send.attributes["http.request.method"], "POST");
    assert.equal(send.attributes["http.response.status_code"], 200);
    // the business's phone-number id is masked too: anything number-shaped is
    assert.match(String(send.attributes["url.full"]), /^http:\/\/127\.0\.0\.1:\d+\/v[\d.]+\/\d{2}\*+\d{3}\/messages$/);
    const download = one(
      "the media download",
      (x) => x.service === "unmix-controller" && x.kind === CLIENT && x.name === "GET /whatsapp_business/attachments/",
    );
    assert.match(String(download.attributes["url.full"]), /\?mid=REDACTED&/, "the download URL's key is not recorded");
    // no span is a bare verb
    const bare = spans.filter((x) => /^(GET|POST|PUT|DELETE|PATCH|HEAD)$/.test(x.name));
    assert.deepEqual(
      bare.map((x) => `${x.service}: ${x.name} ${JSON.stringify(x.attributes)}`),
      [],
    );
  });

  test("the latency histograms' exemplars link to the message's trace (OpenMetrics)", async () => {
    const traceId = await traceOf(first.id);
    const scrape = async (url: string) => {
      const res = await fetch(`${url}/metrics`, { headers: { accept: "application/openmetrics-text; version=1.0.0" } });
      assert.match(res.headers.get("content-type") ?? "", /^application\/openmetrics-text/);
      return res.text();
    };
    const exemplars = (text: string, metric: string) =>
      [...text.matchAll(new RegExp(`^${metric}_bucket\\{[^}]*\\} \\d+ # \\{trace_id="([\\da-f]{32})",span_id="[\\da-f]{16}"\\}`, "gm"))].map(
        (m) => m[1] as string,
      );
    const webhook = exemplars(await scrape(p.ingress.url), "unmix_webhook_request_seconds");
    assert.ok(webhook.length > 0, "the webhook histogram has exemplars");
    // each names a trace the collector received (spans leave in batches, a fraction of a second later)
    await until("the exemplars' traces at the collector", () => (webhook.every((t) => p.otlp.spans.some((x) => x.traceId === t)) ? true : undefined), 5_000);
    const total = exemplars(await scrape(p.controller.url), "unmix_controller_step_duration_seconds");
    assert.ok(total.includes(traceId), `the end-to-end histogram's exemplar is the voice note's trace ${traceId}: ${total.join(", ")}`);
    // a scraper that does not ask for OpenMetrics gets the Prometheus text format, as before
    const plain = await fetch(`${p.ingress.url}/metrics`);
    assert.match(plain.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(await plain.text(), /^# TYPE unmix_webhook_requests_total counter$/m);
  });

  test("sent again within 24 hours it is answered from the cache: no new SeparationJob or Job, and sooner", async () => {
    const jobsBefore = await jobCount();
    const again = await send(note);
    const r = await reply(again.id);
    const ms = Date.now() - again.t0;
    assert.equal(r.type, "audio");
    assert.equal(r.voice, true);
    assert.equal(r.replyTo, again.id);
    assert.equal(await p.sjs.get(separationJobName(again.id)), undefined, "no SeparationJob for a cache hit");
    assert.equal(await jobCount(), jobsBefore);
    assert.ok(ms < first.ms, `the cached reply (${ms} ms) comes sooner than the first (${first.ms} ms)`);
    assert.deepEqual(await objects(), cached(note.bytes, "ogg-opus"));
  });

  test("P12: 24 hours later the running controller deletes the cached result and its copy at WhatsApp; a re-send is separated afresh", async () => {
    assert.deepEqual(await objects(), cached(note.bytes, "ogg-opus"));
    const mediaId = first.reply.mediaId as string;
    assert.ok(p.sim.media(mediaId), "the reply's media is in WhatsApp's store");
    // the controller's own clock (and so its garbage collector's) moves a day and a minute ahead
    await p.moveControllerClock(24 * 3600 + 60);
    try {
      await until(
        "the controller's garbage collector to expire the entry",
        async () => ((await objects()).length === 0 && p.sim.deletedMedia.includes(mediaId) ? true : undefined),
        60_000,
      );
    } finally {
      await p.moveControllerClock(0);
    }
    assert.equal(p.sim.media(mediaId), undefined, "gone from WhatsApp's media store");
    const jobsBefore = await jobCount();
    const again = await send(note);
    const r = await reply(again.id);
    assert.equal(r.type, "audio");
    assert.notEqual(r.mediaId, mediaId, "a new upload, not the deleted media");
    assert.ok(await p.sjs.get(separationJobName(again.id)), "a SeparationJob: not a cache hit");
    assert.equal(await jobCount(), jobsBefore + 1, "the media is separated again");
    await finished(again.id);
    assert.deepEqual(await objects(), cached(note.bytes, "ogg-opus"), "and cached again");
    await p.cache.forgetUser(user); // the next journeys start from an empty bucket
  });
});

describe("speech over a music recording", () => {
  test("comes back with the music removed and the voice as loud as it was, made by the model the cache names", async (t) => {
    const m = speechOverMusic(10, 0, 7);
    try {
      const sent = await send({ bytes: m.note, mimeType: "audio/ogg; codecs=opus", type: "audio", voice: true });
      const r = await reply(sent.id);
      assert.equal(r.type, "audio");
      const media = p.sim.media(r.mediaId as string);
      assert.ok(media, "the replied media is on WhatsApp");
      // The floors are the job image's (job-image/README.md, "Floors": DeepFilterNet3 at 0 dB through
      // Opus both ways, lowest of two measured tables less 1.5 dB): aligned within 2 ms, SI-SDR up,
      // music in the pauses at least 15 dB quieter, loudness within 4 LU. The mix sent back as it
      // is, a shifted or a wrong-stem reply misses them (job-image/tests/test_quality.py).
      const score = scoreReply(m, media.bytes, "ogg-opus");
      t.diagnostic(JSON.stringify(score));
      assert.deepEqual(score.failures, [], `the reply meets the quality floors: ${JSON.stringify(score)}`);
      const sj = await finished(sent.id);
      assert.equal(sj.status?.result?.engine, MODELS[p.model.name].engine);
      assert.equal(sj.status?.result?.modelId, modelId(p.model.name));
      assert.deepEqual(await objects(), cached(m.note, "ogg-opus"));
      await p.cache.forgetUser(user);
    } finally {
      m.remove();
    }
  });
});

describe("a video", () => {
  test("comes back as a video whose video stream is bit-identical to the original's", async () => {
    const clip = makeMedia("mp4", 3, 2);
    const sent = await send(clip);
    const r = await reply(sent.id);
    assert.equal(r.type, "video");
    const media = p.sim.media(r.mediaId as string);
    assert.ok(media);
    const info = probe(media.bytes);
    assert.deepEqual(info.streams.map((s) => s.codec_type).sort(), ["audio", "video"]);
    assert.equal(streamMd5(media.bytes, "0:v"), streamMd5(clip.bytes, "0:v"));
    await finished(sent.id);
    assert.deepEqual(await objects(), cached(clip.bytes, "mp4"));
    await p.cache.forgetUser(user); // the next journeys start from an empty bucket
  });
});

describe("an MP3, delivered twice at once and redelivered after the reply", () => {
  test("comes back as one MP3 reply", async () => {
    const song = makeMedia("mp3", 3, 3);
    const sent = await send(song, { duplicates: 1 });
    const r = await reply(sent.id);
    assert.equal(r.type, "audio");
    assert.notEqual(r.voice, true);
    const media = p.sim.media(r.mediaId as string);
    assert.ok(media);
    const info = probe(media.bytes);
    assert.equal(info.format.format_name, "mp3");
    assert.deepEqual(
      info.streams.map((s) => s.codec_name),
      ["mp3"],
    );
    await finished(sent.id);
    // Meta redelivers the same webhook later (it did not see our 200, say)
    const redelivered = await p.sim.deliverRaw(sent.body);
    assert.equal(redelivered[0]?.status, 200);
    // a text sent after it is answered: by then the worker has taken the redelivery too
    const marker = await p.sim.sendUserMessage({ type: "text", body: "help" });
    await reply(marker.id, 30_000);
    assert.equal(repliesTo(sent.id).length, 1, "exactly one reply for one message");
    assert.deepEqual(await objects(), cached(song.bytes, "mp3"));
    await p.cache.forgetUser(user);
  });
});

describe("media that cannot be cleaned", () => {
  for (const [kind, failure, expected] of [
    ["corrupt", "BadInput", replies.failure.BadInput],
    ["mp4-silent", "NoAudio", replies.failure.NoAudio],
  ] as const) {
    test(`${kind}: a polite, specific reply, and the Job fails without retries`, async () => {
      const m = makeMedia(kind, 3, 4);
      const sent = await send(m);
      const r = await reply(sent.id);
      assert.equal(r.type, "text");
      assert.equal(r.text, expected);
      const sj = await finished(sent.id);
      assert.equal(sj.status?.failure?.class, failure);
      const job = await p.batch.readNamespacedJob({ name: sj.status?.jobName as string, namespace: p.namespace });
      assert.equal(job.status?.failed, 1, "one pod ran: a bad input is not retried");
      assert.ok(job.status?.conditions?.some((c) => c.type === "Failed" && c.status === "True"));
      assert.deepEqual(await objects(), [], "nothing of a failed job is kept");
    });
  }
});

// After every journey above, before `delete` erases the user's SeparationJobs: nothing the product
// wrote for the SRE or the trace backend identifies the user. The simulator's wamids embed the
// number as Meta's do, so a message id quoted anywhere shows up here as the number's base64.
describe("what the product writes about its users", () => {
  const forms = () => personalForms({ waId: p.sim.defaultUser.waId as string, name: p.sim.defaultUser.name as string });

  test("no controller or ingress log line holds the user's number (in clear or base64), a wamid or the profile name", () => {
    const files = readdirSync(p.stack.dir).filter((f) => /^(ingress|controller)-\d+\.log$/.test(f));
    assert.ok(files.length >= 2, `the services' logs: ${files.join(", ")}`);
    const lines = files.flatMap((f) =>
      readFileSync(join(p.stack.dir, f), "utf8")
        .split("\n")
        .map((text, i) => ({ where: `${f}:${i + 1}`, text })),
    );
    assert.ok(lines.length > 50, `log lines were written (${lines.length})`);
    assert.deepEqual(findLeaks(lines, forms()), []);
  });

  test("no Event, condition or status of a SeparationJob holds them", async () => {
    const events = (await p.core.listNamespacedEvent({ namespace: p.namespace })).items;
    assert.ok(events.length > 0, "the controller recorded Events");
    const sjs = (await p.sjs.list()).items;
    assert.ok(sjs.length > 0, "SeparationJobs are kept after they finish");
    const texts = [
      ...events.map((e) => ({
        where: `Event ${e.metadata?.name}`,
        text: JSON.stringify({ reason: e.reason, message: e.message, note: (e as { note?: string }).note }),
      })),
      ...sjs.map((sj) => ({ where: `SeparationJob ${sj.metadata.name} status`, text: JSON.stringify(sj.status) })),
    ];
    assert.deepEqual(findLeaks(texts, forms()), []);
  });

  test("P2: read as the `view` role, no SeparationJob, Job or pod holds the number, the user id, the name, a wamid or a presigned URL", async () => {
    const kube = p.stack.kube as NonNullable<typeof p.stack.kube>;
    const rbac = kube.kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    // what an operator grants to let `view` see SeparationJobs: a ClusterRole aggregated into it
    const reader = "unmix-separationjobs-view";
    await rbac.createClusterRole({
      body: {
        metadata: { name: reader, labels: { "rbac.authorization.k8s.io/aggregate-to-view": "true" } },
        rules: [{ apiGroups: ["unmix.dev"], resources: ["separationjobs"], verbs: ["get", "list", "watch"] }],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: "viewer" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "view" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "viewer" }],
      },
    });
    // the aggregation controller adds the rules to `view` a moment later
    await until("SeparationJobs aggregated into view", async () => {
      const view = await rbac.readClusterRole({ name: "view" });
      return view.rules?.some((r) => r.resources?.includes("separationjobs")) ? true : undefined;
    });
    const asViewer = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          `${kube.server}${path}`,
          { ca: kube.caData, headers: { authorization: `Bearer ${kube.token}`, "impersonate-user": "viewer" } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          },
        );
        req.on("error", reject);
        req.end();
      });
    const ns = p.namespace;
    const forbidden = [...forms(), p.sim.defaultUser.userId as string, "X-Amz-Signature", "X-Amz-Credential"];
    const texts: { where: string; text: string }[] = [];
    for (const [what, path] of [
      ["SeparationJobs", `/apis/unmix.dev/v1alpha1/namespaces/${ns}/separationjobs`],
      ["Jobs", `/apis/batch/v1/namespaces/${ns}/jobs`],
      ["Pods", `/api/v1/namespaces/${ns}/pods`],
    ] as const) {
      const r = await asViewer(path);
      assert.equal(r.status, 200, `the view role lists ${what}: ${r.body.slice(0, 200)}`);
      const items = (JSON.parse(r.body) as { items: { metadata: { name: string } }[] }).items;
      assert.ok(items.length > 0, `there are ${what} to read`);
      for (const item of items) texts.push({ where: `${what}/${item.metadata.name}`, text: JSON.stringify(item) });
    }
    assert.deepEqual(findLeaks(texts, forbidden), []);
    // and what identifies the user is where `view` cannot read it
    assert.equal((await asViewer(`/api/v1/namespaces/${ns}/secrets`)).status, 403);
    // which is deleted once the reply is out (every SeparationJob here has finished)
    const left = (await p.core.listNamespacedSecret({ namespace: ns })).items.map((x) => x.metadata?.name ?? "").filter((n) => /^sj-.*-(sender|urls)$/.test(n));
    assert.deepEqual(left, [], "no sender or URL Secret outlives its SeparationJob's reply");
  });

  test("no span holds them, in any attribute, event (exceptions included) or status", () => {
    assert.ok(p.otlp.spans.length > 50, `spans were received (${p.otlp.spans.length})`);
    const texts = p.otlp.spans.flatMap((span) =>
      [
        span.name,
        span.status.message ?? "",
        ...Object.entries(span.attributes).map(([k, v]) => `${k}=${JSON.stringify(v)}`),
        ...span.events.flatMap((e) => [e.name, ...Object.entries(e.attributes).map(([k, v]) => `${k}=${JSON.stringify(v)}`)]),
      ].map((text) => ({ where: `${span.service}: ${span.name}`, text })),
    );
    assert.deepEqual(findLeaks(texts, forms()), []);
  });
});

describe("delete", () => {
  test("leaves nothing of the user in the object store", async () => {
    const note = makeMedia("voice", 3, 5);
    const sent = await send(note);
    await reply(sent.id);
    await finished(sent.id);
    assert.deepEqual(await objects(), cached(note.bytes, "ogg-opus"));
    const del = await p.sim.sendUserMessage({ type: "text", body: "delete" });
    const r = await reply(del.id, 30_000);
    assert.equal(r.type, "text");
    assert.match(r.text as string, /^Done\. I deleted 1 cached result/);
    assert.deepEqual(await objects(), []);
    assert.deepEqual(
      (await p.sjs.list()).items.filter((sj) => sj.metadata.labels?.["unmix.dev/user"] === user),
      [],
    );
  });
});
