// The whole ingress (ROLE=all) on the real stack: webhook → JetStream → worker → SeparationJobs on
// the real API server, cached results in real MinIO, replies through the WhatsApp simulator. Every
// test uses its own users, so they share one stack without seeing each other.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { modelId } from "@unmix/api/models";
import {
  API_VERSION,
  GROUP,
  KIND,
  MIME_TYPE_MAX_CHARS,
  PLURAL,
  parseReceipt,
  REPLY_RECEIPT_ANNOTATION,
  separationJobName,
  TRACEPARENT_ANNOTATION,
  USER_LABEL,
  VERSION,
} from "@unmix/api/separationjob";
import { httpAndFetch } from "@unmix/core/instrumentations";
import { k8s, SeparationJobs } from "@unmix/core/kube";
import { createLogger } from "@unmix/core/log";
import { userKey } from "@unmix/core/privacy";
import { replies } from "@unmix/core/replies";
import { resultKey } from "@unmix/core/result-cache";
import { contextFromTraceparent, inSpan, stopTelemetry, tracer } from "@unmix/core/spans";
import { startTelemetry } from "@unmix/core/telemetry";
import { createWhatsAppClient, signWebhookBody } from "@unmix/core/whatsapp";
import type { SentMessage } from "@unmix/e2e/whatsapp-sim";
import { buildMessage, messagesEnvelope, metaJson } from "@unmix/e2e/whatsapp-sim/webhooks";
import { messageRef } from "../src/envelope.ts";
import type { MessageHandler } from "../src/handler.ts";
import { Metrics } from "../src/metrics.ts";
import { BUCKETS, kvStream, kvSubject, STREAMS, subjects } from "../src/nats.ts";
import { UserState } from "../src/users.ts";
import { Worker } from "../src/worker.ts";
import {
  ACCESS_TOKEN,
  APP_SECRET,
  asWebhook,
  type Harness,
  MODEL_ID,
  mp3,
  mp4,
  NAMESPACE,
  ogg,
  SIGNING_KEY,
  startHarness,
  streamMessages,
  USER_KEY_SECRET,
  until,
} from "./harness.ts";

let h: Harness;
let sink: Server;
const phones: string[] = [];
const names: string[] = [];

before(async () => {
  // a collector that accepts spans, so the real OpenTelemetry SDK runs and propagates trace context
  sink = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
  // the SDK reads its exporter settings from the process environment
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  await startTelemetry("unmix-ingress-test", async () => httpAndFetch());
  h = await startHarness({
    env: { RATE_LIMIT_PER_HOUR: "3", MAX_INPUT_BYTES: "1000000", WORKER_MAX_DELIVER: "3", WORKER_BACKOFF_SECONDS: "0.2", WORKER_ACK_WAIT_SECONDS: "5" },
  });
});
after(async () => {
  await h?.stop();
  await stopTelemetry();
  sink?.closeAllConnections();
  sink?.close();
});

let seq = 0;
/** A fresh user: a phone number (wa_id) and a profile name, remembered for the log checks. */
interface User {
  waId?: string;
  userId?: string;
  name: string;
}
function newUser(o: { bsuidOnly?: boolean; withBsuid?: boolean } = {}): User {
  const n = String(++seq).padStart(4, "0");
  const name = `Tester Ünïcode ${n}`;
  names.push(name);
  if (o.bsuidOnly) return { userId: `US.9900000000000000${n}`, name };
  const waId = `4917612${n}89`;
  phones.push(waId);
  return { waId, ...(o.withBsuid ? { userId: `DE.5500000000000000${n}` } : {}), name };
}
const keyOf = (u: User) => userKey((u.waId ?? u.userId) as string, USER_KEY_SECRET);
const jobsOf = async (u: User) => (await h.jobs.listOfUser(keyOf(u))).items;

/** Waits until the worker finished with a message and returns what happened (the processed-ids entry). */
async function handled(wamid: string): Promise<string> {
  const kv = await h.nats.kv(BUCKETS.processed);
  return until(`the worker to handle ${wamid}`, async () => {
    const e = await kv.get(messageRef(wamid));
    return e?.operation === "PUT" ? e.string() : undefined;
  });
}

const replyTo = (wamid: string, type?: SentMessage["type"]) => (m: SentMessage) => m.replyTo === wamid && (type === undefined || m.type === type);
const repliesTo = (wamid: string) => h.sim.sentMessages().filter((m) => m.replyTo === wamid);

async function kvHas(bucket: string, key: string): Promise<boolean> {
  const info = await h.nats.jsm.streams.info(kvStream(bucket), { subjects_filter: kvSubject(bucket, key) });
  return (info.state.subjects?.[kvSubject(bucket, key)] ?? 0) > 0;
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${h.ingress.url}/metrics`)).text();
  const prefix = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** A result in the cache for these bytes, as the controller records it. */
async function seedCache(
  bytes: Buffer,
  format: "ogg-opus" | "mp3" | "m4a" | "mp4",
  result: Buffer,
  contentType: string,
  o: { mediaId?: string; model?: string } = {},
) {
  const { createHash } = await import("node:crypto");
  const key = { sha256: createHash("sha256").update(bytes).digest("hex"), format, model: o.model ?? MODEL_ID };
  const tmp = `outputs/seed-${++seq}`;
  await h.store.put(tmp, result, result.length, contentType);
  await h.cache.record(key, tmp, "u-the-first-sender", o.mediaId);
  await h.store.remove([tmp]);
  return key;
}

describe("audio and video become SeparationJobs", () => {
  test("a voice note creates one SeparationJob named after its wamid, labelled with the user's hash, with the trace context", async () => {
    const u = newUser();
    const bytes = ogg(1);
    const mediaId = h.sim.addMedia(bytes, "audio/ogg; codecs=opus");
    const { createHash } = await import("node:crypto");
    const id = `wamid.TRACE${Date.now()}`;
    const body = metaJson(
      messagesEnvelope({ wabaId: h.sim.wabaId, phoneNumberId: h.sim.phoneNumberId, displayPhoneNumber: h.sim.displayPhoneNumber }, [
        buildMessage({ type: "audio", id }, u, Date.parse("2026-11-25T10:00:00Z"), {
          id: mediaId,
          mimeType: "audio/ogg; codecs=opus",
          sha256: createHash("sha256").update(bytes).digest("base64"),
          url: `${h.sim.baseUrl}/x`,
        }),
      ]),
    );
    // the caller (an edge proxy, say) is in a trace; this process's own fetch instrumentation
    // carries it in the traceparent header
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await inSpan(tracer("test"), "edge-proxy", contextFromTraceparent(`00-${traceId}-00f067aa0ba902b7-01`), {}, () =>
      fetch(`${h.ingress.url}/webhook`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-hub-signature-256": signWebhookBody(body, APP_SECRET) },
        body,
      }),
    );
    assert.equal(res.status, 200);
    assert.equal(await handled(id), "job_created");
    const job = await h.jobs.get(separationJobName(id));
    assert.ok(job, "the SeparationJob exists under the name derived from the wamid");
    assert.equal(job.metadata.labels?.[USER_LABEL], keyOf(u));
    assert.match(
      job.metadata.annotations?.[TRACEPARENT_ANNOTATION] ?? "",
      new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`),
      "the webhook's trace continues in the job",
    );
    assert.deepEqual(job.spec, {
      message: { timestamp: "2026-11-25T10:00:00.000Z", phoneNumberId: h.sim.phoneNumberId },
      media: { id: mediaId, mimeType: "audio/ogg; codecs=opus", sha256: createHash("sha256").update(bytes).digest("base64"), kind: "audio", voice: true },
      output: { format: "ogg-opus" },
    });
    assert.ok(!Object.values(job.metadata.labels ?? {}).some((v) => v.includes(u.waId as string)), "no phone number in labels");
  });

  test("P2: who sent the message is in a Secret owned by the SeparationJob, not on it", async () => {
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(20), from: u });
    assert.equal(await handled(sent.id), "job_created");
    const name = separationJobName(sent.id);
    const job = await h.jobs.get(name);
    assert.ok(job);
    for (const personal of [u.waId as string, u.name as string, sent.id])
      assert.ok(!JSON.stringify(job).includes(personal), `no ${personal} on the SeparationJob`);
    assert.deepEqual(await h.jobs.sender(name), { messageId: sent.id, waId: u.waId, profileName: u.name });
    const core = h.stack.kube?.kc.makeApiClient(k8s.CoreV1Api) as k8s.CoreV1Api;
    const secret = await core.readNamespacedSecret({ name: `${name}-sender`, namespace: h.jobs.namespace });
    assert.deepEqual(
      secret.metadata?.ownerReferences?.map((r) => [r.kind, r.name, r.uid]),
      [["SeparationJob", name, job.metadata.uid]],
      "deleted with its SeparationJob",
    );
    assert.equal(secret.immutable, true);
    // the worker killed between the two creates: JetStream redelivers the message, whose handling
    // finds the SeparationJob and adds the missing Secret
    await core.deleteNamespacedSecret({ name: `${name}-sender`, namespace: h.jobs.namespace });
    assert.equal(await h.jobs.sender(name), undefined);
    const again = await h.jobs.create({ spec: job.spec, sender: { messageId: sent.id, waId: u.waId, profileName: u.name }, userKey: keyOf(u) });
    assert.deepEqual(again, { name, created: false });
    assert.deepEqual(await h.jobs.sender(name), { messageId: sent.id, waId: u.waId, profileName: u.name });
  });

  test("the user sees read ticks, typing and ⏳ on their message", async () => {
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "video", bytes: mp4(2), mimeType: "video/mp4", from: u });
    assert.equal(await handled(sent.id), "job_created");
    assert.ok(h.sim.markedRead().some((r) => r.messageId === sent.id && r.typing));
    const reaction = await h.sim.waitForMessage((m) => m.type === "reaction" && m.reaction?.messageId === sent.id);
    assert.equal(reaction.reaction?.emoji, "⏳");
    assert.equal(reaction.to, u.waId);
    const [job] = await jobsOf(u);
    assert.equal(job?.spec.media.kind, "video");
    assert.equal(job?.spec.output.format, "mp4");
  });

  test("each accepted type gets the format it came in (MP3, M4A, 3GPP video → MP4)", async () => {
    const u = newUser();
    const cases = [
      { type: "audio", bytes: mp3(3), mimeType: "audio/mpeg", kind: "audio", format: "mp3" },
      { type: "audio", bytes: mp4(4), mimeType: "audio/mp4", kind: "audio", format: "m4a" },
      { type: "video", bytes: mp4(5), mimeType: "video/3gpp", kind: "video", format: "mp4" },
    ] as const;
    for (const c of cases) {
      const sent = await h.sim.sendUserMessage({ type: c.type, bytes: c.bytes, mimeType: c.mimeType, from: u });
      assert.equal(await handled(sent.id), "job_created", c.mimeType);
      const job = await h.jobs.get(separationJobName(sent.id));
      assert.deepEqual([job?.spec.media.kind, job?.spec.output.format, job?.spec.media.voice], [c.kind, c.format, false], c.mimeType);
    }
  });

  test("duplicates delivered one after another and at the same moment make exactly one SeparationJob", async () => {
    for (const concurrent of [false, true]) {
      const u = newUser();
      const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(10 + seq), from: u }, { duplicates: 4, concurrent });
      assert.deepEqual(
        sent.deliveries.map((d) => d.status),
        [200, 200, 200, 200, 200],
      );
      assert.equal(await handled(sent.id), "job_created");
      // Meta keeps redelivering after the first copy was handled
      assert.deepEqual(
        (await h.sim.deliverRaw(sent.body, { duplicates: 2, concurrent })).map((d) => d.status),
        [200, 200, 200],
      );
      await until("the redeliveries to be seen", async () =>
        (await metric("unmix_webhook_messages_total", 'type="audio",duplicate="true"')) > 0 ? true : undefined,
      );
      const jobs = await jobsOf(u);
      assert.equal(jobs.length, 1, concurrent ? "concurrent duplicates" : "sequential duplicates");
      assert.equal(h.sim.sentMessages().filter((m) => m.reaction?.messageId === sent.id).length, 1, "one ⏳, not one per copy");
    }
  });

  test("a username-only user (BSUID, no phone number) gets a job and replies addressed to their BSUID", async () => {
    const u = newUser({ bsuidOnly: true });
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(20), from: u });
    assert.equal(await handled(sent.id), "job_created");
    const job = await h.jobs.get(separationJobName(sent.id));
    assert.deepEqual(await h.jobs.sender(separationJobName(sent.id)), { messageId: sent.id, userId: u.userId, profileName: u.name });
    assert.equal(job?.metadata.labels?.[USER_LABEL], userKey(u.userId as string, USER_KEY_SECRET));
    const help = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    const reply = await h.sim.waitForMessage(replyTo(help.id, "text"));
    assert.equal(reply.addressedBy, "recipient");
    assert.equal(reply.to, u.userId);
    assert.equal(reply.text, replies.help);
  });
});

describe("what cannot be processed", () => {
  test("P3: images, documents, stickers, locations, reactions, contacts, buttons, lists and unknown types get the short explanation", async () => {
    const u = newUser();
    const ids: string[] = [];
    for (const m of [
      { type: "image" },
      { type: "document" },
      { type: "sticker" },
      { type: "location", latitude: 1, longitude: 2 },
      { type: "reaction", messageId: "wamid.earlier", emoji: "👍" },
      { type: "unsupported", unsupportedType: "poll" },
    ] as const) {
      ids.push((await h.sim.sendUserMessage({ ...m, from: u } as Parameters<typeof h.sim.sendUserMessage>[0])).id);
    }
    // types the simulator has no builder for, as raw webhooks
    const raw = (id: string, type: string, extra: object) =>
      metaJson({
        object: "whatsapp_business_account",
        entry: [
          {
            id: h.sim.wabaId,
            changes: [
              {
                field: "messages",
                value: {
                  messaging_product: "whatsapp",
                  metadata: { display_phone_number: h.sim.displayPhoneNumber, phone_number_id: h.sim.phoneNumberId },
                  contacts: [{ profile: { name: u.name }, wa_id: u.waId }],
                  messages: [{ from: u.waId, id, timestamp: String(Math.floor(Date.now() / 1000)), type, ...extra }],
                },
              },
            ],
          },
        ],
      });
    for (const [type, extra] of [
      ["contacts", { contacts: [{ name: { formatted_name: "Someone" }, phones: [{ phone: "+1 555 0100" }] }] }],
      ["interactive", { interactive: { type: "button_reply", button_reply: { id: "b1", title: "Yes" } } }],
      ["button", { button: { payload: "p", text: "OK" } }],
      ["order", { order: { catalog_id: "1", product_items: [] } }],
    ] as const) {
      const id = `wamid.RAW${type}${Date.now()}`;
      assert.deepEqual(
        (await h.sim.deliverRaw(raw(id, type, extra))).map((d) => d.status),
        [200],
      );
      ids.push(id);
    }
    for (const id of ids) {
      assert.equal(await handled(id), "unsupported_type");
      const [reply, ...more] = repliesTo(id);
      assert.equal(reply?.text, replies.unsupportedType);
      assert.equal(more.length, 0);
    }
    assert.equal((await jobsOf(u)).length, 0);
  });

  test("ordinary text gets a hint; a system notice is not answered", async () => {
    const u = newUser();
    const text = await h.sim.sendUserMessage({ type: "text", body: "can you remove the music?", from: u });
    assert.equal(await handled(text.id), "unknown_text");
    assert.equal((await h.sim.waitForMessage(replyTo(text.id))).text, replies.unknownText);
    const id = `wamid.SYSTEM${Date.now()}`;
    const body = metaJson({
      object: "whatsapp_business_account",
      entry: [
        {
          id: h.sim.wabaId,
          changes: [
            {
              field: "messages",
              value: {
                messaging_product: "whatsapp",
                metadata: { display_phone_number: h.sim.displayPhoneNumber, phone_number_id: h.sim.phoneNumberId },
                messages: [
                  {
                    from: u.waId,
                    id,
                    timestamp: String(Math.floor(Date.now() / 1000)),
                    type: "system",
                    system: { body: "User changed number", type: "user_changed_number" },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    await h.sim.deliverRaw(body);
    assert.equal(await handled(id), "ignored");
    assert.equal(repliesTo(id).length, 0);
  });

  test("an audio type the pipeline cannot encode back (AMR, OGG/Vorbis) is explained, with no job", async () => {
    const u = newUser();
    for (const mimeType of ["audio/amr", 'audio/ogg; codecs="vorbis"']) {
      const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(30), mimeType, from: u });
      assert.equal(await handled(sent.id), "unsupported_media");
      assert.equal((await h.sim.waitForMessage(replyTo(sent.id))).text, replies.unsupportedMedia(mimeType.split(";")[0] as string));
    }
    assert.equal((await jobsOf(u)).length, 0);
  });

  test("a MIME type longer than a SeparationJob keeps is answered as unsupported media at once: no retry, no job", async () => {
    const u = newUser();
    const mimeType = `audio/ogg; codecs=opus; x=${"a".repeat(MIME_TYPE_MAX_CHARS)}`;
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(30), mimeType, from: u });
    assert.equal(await handled(sent.id), "unsupported_media");
    assert.equal((await h.sim.waitForMessage(replyTo(sent.id))).text, replies.unsupportedMedia("audio/ogg"));
    assert.equal(repliesTo(sent.id).length, 1);
    assert.equal((await jobsOf(u)).length, 0);
  });

  test("media over MAX_INPUT_BYTES, or that WhatsApp could not deliver (131052), is refused politely", async () => {
    const u = newUser();
    const big = await h.sim.sendUserMessage({ type: "video", bytes: mp4(6, 1_000_001), mimeType: "video/mp4", from: u });
    assert.equal(await handled(big.id), "too_large");
    assert.equal((await h.sim.waitForMessage(replyTo(big.id))).text, replies.tooLarge(0));
    const id = `wamid.TOOBIG${Date.now()}`;
    const body = metaJson({
      object: "whatsapp_business_account",
      entry: [
        {
          id: h.sim.wabaId,
          changes: [
            {
              field: "messages",
              value: {
                messaging_product: "whatsapp",
                metadata: { display_phone_number: h.sim.displayPhoneNumber, phone_number_id: h.sim.phoneNumberId },
                contacts: [{ profile: { name: u.name }, wa_id: u.waId }],
                messages: [
                  {
                    from: u.waId,
                    id,
                    timestamp: String(Math.floor(Date.now() / 1000)),
                    type: "unsupported",
                    errors: [{ code: 131052, title: "Media download error", error_data: { details: "file too large" } }],
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    await h.sim.deliverRaw(body);
    assert.equal(await handled(id), "too_large");
    assert.equal((await jobsOf(u)).length, 0);
  });
});

describe("the 24-hour result cache", () => {
  test("a hit with a still-valid WhatsApp media id is answered at once with it, quoting the message, and creates no job", async () => {
    const u = newUser();
    const input = ogg(40);
    const wa = createWhatsAppClient({ baseUrl: h.sim.baseUrl, version: h.sim.version, accessToken: ACCESS_TOKEN });
    const cleaned = ogg(41);
    const mediaId = await wa.uploadMedia(h.sim.phoneNumberId, cleaned, "audio/ogg", "cleaned.ogg");
    const key = await seedCache(input, "ogg-opus", cleaned, "audio/ogg", { mediaId });
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: input, mimeType: "audio/ogg; codecs=opus", voice: true, from: u });
    const reply = await h.sim.waitForMessage(replyTo(sent.id, "audio"));
    assert.equal(reply.mediaId, mediaId);
    assert.equal(reply.voice, true);
    assert.equal(reply.to, u.waId);
    assert.equal(await handled(sent.id), "cache_hit");
    assert.equal((await jobsOf(u)).length, 0);
    assert.equal(await h.jobs.get(separationJobName(sent.id)), undefined);
    assert.ok(await h.store.stat(`owners/${keyOf(u)}/${key.sha256}.ogg-opus.${MODEL_ID}`), "the user is an owner of the entry now (so delete finds it)");
  });

  test("a hit without a media id uploads the cached object again; a video hit comes back as video", async () => {
    const u = newUser();
    const input = mp4(50);
    const cleaned = mp4(51);
    await seedCache(input, "mp4", cleaned, "video/mp4");
    const sent = await h.sim.sendUserMessage({ type: "video", bytes: input, mimeType: "video/mp4", from: u });
    const reply = await h.sim.waitForMessage(replyTo(sent.id, "video"));
    assert.deepEqual(h.sim.media(reply.mediaId as string)?.bytes, cleaned, "the reply carries the cached bytes");
    assert.equal(await handled(sent.id), "cache_hit");
    assert.equal((await jobsOf(u)).length, 0);
  });

  test("a result of another engine, another version of the model or another format is not a hit", async () => {
    const u = newUser();
    const input = ogg(60);
    await seedCache(input, "ogg-opus", ogg(61), "audio/ogg", { model: modelId("dfn3") });
    await seedCache(input, "ogg-opus", ogg(63), "audio/ogg", { model: "htdemucs-4.0.1" });
    await seedCache(input, "mp3", mp3(62), "audio/mpeg");
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: input, mimeType: "audio/ogg; codecs=opus", from: u });
    assert.equal(await handled(sent.id), "job_created");
    assert.equal(h.sim.sentMessages().filter((m) => m.replyTo === sent.id && m.type === "audio").length, 0);
  });
});

describe("commands", () => {
  test("help, in any case and with spaces, answers with the help text quoting the message", async () => {
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "text", body: "  HeLp ", from: u });
    const reply = await h.sim.waitForMessage(replyTo(sent.id, "text"));
    assert.equal(reply.text, replies.help);
  });

  test("stop opts out (nothing more is processed except start, help and delete); start undoes it", async () => {
    const u = newUser();
    const stop = await h.sim.sendUserMessage({ type: "text", body: "STOP", from: u });
    assert.equal((await h.sim.waitForMessage(replyTo(stop.id))).text, replies.stopped);
    assert.ok(await kvHas(BUCKETS.optOut, keyOf(u)));
    const audio = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(70), from: u });
    assert.equal(await handled(audio.id), "opted_out");
    assert.equal((await h.sim.waitForMessage(replyTo(audio.id))).text, replies.optedOut);
    const help = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    assert.equal((await h.sim.waitForMessage(replyTo(help.id))).text, replies.help);
    assert.equal((await jobsOf(u)).length, 0);
    assert.equal(await kvHas(BUCKETS.active, keyOf(u)), false, "an opted-out user is not kept as active");

    const start = await h.sim.sendUserMessage({ type: "text", body: "start", from: u });
    assert.equal((await h.sim.waitForMessage(replyTo(start.id))).text, replies.started);
    assert.equal(await kvHas(BUCKETS.optOut, keyOf(u)), false);
    const again = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(71), from: u });
    assert.equal(await handled(again.id), "job_created");
  });

  test("P13: delete erases cached results (and their WhatsApp copies), jobs, activity and dead letters, keeps a bare hourly count, and says truthfully what is kept", async () => {
    const u = newUser({ withBsuid: true });
    // a cached result the user received, a pending job, a rate-limit counter, an activity entry
    const input = ogg(80);
    const whatsappCopy = h.sim.addMedia(ogg(81), "audio/ogg"); // as the controller's upload of the result
    const key = await seedCache(input, "ogg-opus", ogg(81), "audio/ogg", { mediaId: whatsappCopy });
    const hit = await h.sim.sendUserMessage({ type: "audio", bytes: input, from: u });
    assert.equal(await handled(hit.id), "cache_hit");
    const miss = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(82), from: u });
    assert.equal(await handled(miss.id), "job_created");
    const keys = [userKey(u.waId as string, USER_KEY_SECRET), userKey(u.userId as string, USER_KEY_SECRET)];
    assert.ok(await kvHas(BUCKETS.active, keys[0] as string));
    assert.ok(await kvHas(BUCKETS.active, keys[1] as string), "the BSUID's key links to the same user");
    assert.ok(await kvHas(BUCKETS.rateLimit, keys[0] as string));
    await h.nats.publish(subjects.deadLetter(keys[0] as string), "{}", {});
    assert.equal((await jobsOf(u)).length, 1);

    const del = await h.sim.sendUserMessage({ type: "text", body: "Delete", from: u });
    const reply = await h.sim.waitForMessage(replyTo(del.id));
    assert.equal(reply.text, replies.deleted({ results: 1, jobs: 1, optedOut: false, auditDays: 30 }));
    assert.doesNotMatch(reply.text ?? "", /nothing else/i, "no claim that nothing is kept");
    assert.match(reply.text ?? "", /for 30 days/, "the audit trail's period is stated");

    assert.equal(await h.store.stat(resultKey(key)), undefined, "the cached result is gone from the object store");
    assert.ok(h.sim.deletedMedia.includes(whatsappCopy), "and its copy from WhatsApp's media store");
    const owners: string[] = [];
    for await (const o of h.store.list(`owners/${keys[0]}/`)) owners.push(o.key);
    assert.deepEqual(owners, []);
    assert.equal(await h.jobs.get(separationJobName(miss.id)).then((j) => j?.metadata.deletionTimestamp ?? j), undefined, "the job is gone");
    for (const k of keys) for (const bucket of [BUCKETS.active, BUCKETS.optOut]) assert.equal(await kvHas(bucket, k), false, `${bucket} ${k}`);
    // the hourly count stays, bare: one entry, no message reference, no history
    const counts = await streamMessages(h.nats, kvStream(BUCKETS.rateLimit), kvSubject(BUCKETS.rateLimit, keys[0] as string));
    assert.equal(counts.length, 1);
    const count = JSON.parse(counts[0]?.data ?? "{}") as { used: number; refs: string[] };
    assert.equal(count.used, 1);
    assert.deepEqual(count.refs, [], "no message reference kept");
    assert.equal(await kvHas(BUCKETS.rateLimit, keys[1] as string), false);
    assert.deepEqual(await streamMessages(h.nats, STREAMS.deadLetter, subjects.deadLetter(keys[0] as string)), []);
  });

  test("P13: delete keeps a stop: the user stays opted out, and is told so", async () => {
    const u = newUser();
    const stop = await h.sim.sendUserMessage({ type: "text", body: "stop", from: u });
    assert.equal((await h.sim.waitForMessage(replyTo(stop.id))).text, replies.stopped);
    const del = await h.sim.sendUserMessage({ type: "text", body: "delete", from: u });
    assert.equal((await h.sim.waitForMessage(replyTo(del.id))).text, replies.deleted({ results: 0, jobs: 0, optedOut: true, auditDays: 30 }));
    assert.ok(await kvHas(BUCKETS.optOut, keyOf(u)));
    const audio = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(83), from: u });
    assert.equal(await handled(audio.id), "opted_out", "nothing is processed after delete either");
    assert.equal((await jobsOf(u)).length, 0);
  });

  test("P13: delete and re-send does not escape the hourly limit", async () => {
    const u = newUser();
    for (let i = 0; i < 3; i++) assert.equal(await handled((await h.sim.sendUserMessage({ type: "audio", bytes: ogg(84 + i), from: u })).id), "job_created");
    const del = await h.sim.sendUserMessage({ type: "text", body: "delete", from: u });
    await h.sim.waitForMessage(replyTo(del.id));
    const again = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(87), from: u });
    assert.equal(await handled(again.id), "rate_limited");
    assert.equal((await h.sim.waitForMessage(replyTo(again.id, "text"))).text, replies.rateLimited(3));
    assert.equal((await jobsOf(u)).length, 0, "the erased jobs are gone and no new one was made");
  });
});

describe("rate limit", () => {
  test("past RATE_LIMIT_PER_HOUR jobs an hour the user gets a polite reply and no job", async () => {
    const u = newUser();
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(90 + i), from: u });
      outcomes.push(await handled(sent.id));
      if (i === 3) assert.equal((await h.sim.waitForMessage(replyTo(sent.id, "text"))).text, replies.rateLimited(3));
    }
    assert.deepEqual(outcomes, ["job_created", "job_created", "job_created", "rate_limited"]);
    assert.equal((await jobsOf(u)).length, 3);
    // another user is not affected
    const other = newUser();
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(95), from: other });
    assert.equal(await handled(sent.id), "job_created");
  });
});

describe("redelivery and failures", () => {
  test("a copy arriving after JetStream's duplicate window is dropped by the processed-ids bucket", async () => {
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    assert.equal(await handled(sent.id), "help");
    const before = await metric("unmix_worker_messages_total", 'type="text",outcome="redelivery_dropped"');
    // what the webhook would publish for a copy Meta sends a day later: same wamid, new dedup id
    const payload = JSON.stringify({
      v: 1,
      id: sent.id,
      timestamp: "1795600000",
      phoneNumberId: h.sim.phoneNumberId,
      sender: { waId: u.waId },
      type: "text",
      command: "help",
    });
    await h.nats.publish(subjects.inbound(keyOf(u)), payload, asWebhook(subjects.inbound(keyOf(u)), payload, `${sent.id}-a-day-later`));
    await until("the late copy to be dropped", async () =>
      (await metric("unmix_worker_messages_total", 'type="text",outcome="redelivery_dropped"')) > before ? true : undefined,
    );
    assert.equal(repliesTo(sent.id).length, 1, "answered once");
  });

  test("a message that keeps failing is retried with backoff, then set aside in the dead-letter stream and counted", async () => {
    const u = newUser();
    const before = await metric("unmix_worker_dead_letters_total", 'reason="failed"');
    // every Graph call of 3 deliveries (mark read + reply) fails with a temporary error
    h.sim.failNext("messages", "temporarily-unavailable", 6);
    const sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    const [dead] = await until("the dead letter", async () => {
      const d = await streamMessages(h.nats, STREAMS.deadLetter, subjects.deadLetter(keyOf(u)));
      return d.length ? d : undefined;
    });
    assert.equal(JSON.parse(dead?.data as string).id, sent.id);
    assert.equal(dead?.headers["Unmix-Deliveries"], "3");
    assert.match(dead?.headers["Unmix-Reason"] ?? "", /133004|temporarily/i);
    assert.equal(await metric("unmix_worker_dead_letters_total", 'reason="failed"'), before + 1);
    assert.ok((await metric("unmix_worker_failures_total", "")) >= 2, "two failed attempts before the last");
    assert.ok((await streamMessages(h.nats, STREAMS.audit, "unmix.audit.dead-lettered")).some((e) => JSON.parse(e.data).ref === messageRef(sent.id)));
    const info = await h.nats.jsm.consumers.info(STREAMS.inbound, "worker");
    assert.equal(info.num_ack_pending, 0, "nothing left hanging");
    // the simulator's faults are used up: the bot works again
    const after = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    assert.equal((await h.sim.waitForMessage(replyTo(after.id))).text, replies.help);
  });

  test("a message whose handler never returns (a hung or crashed replica) is moved to the dead-letter stream after max_deliver", async () => {
    // a replica whose handler hangs and stops telling JetStream it is working
    await h.restart({ WORKER_MAX_DELIVER: "2", WORKER_ACK_WAIT_SECONDS: "1" });
    await h.ingress.stop();
    const metrics = new Metrics();
    const hung = new Worker(
      { nats: h.nats, handler: { handle: () => new Promise(() => {}) } as unknown as MessageHandler, metrics, log: createLogger("hung", { level: "silent" }) },
      { concurrency: 4, maxDeliver: 2, backoffMs: [1000], ackWaitMs: 1000, keepAliveMaxMs: 0, signingKey: SIGNING_KEY },
    );
    await hung.start();
    try {
      const u = newUser();
      const id = `wamid.HUNG${Date.now()}`;
      const payload = JSON.stringify({
        v: 1,
        id,
        timestamp: "1795600000",
        phoneNumberId: h.sim.phoneNumberId,
        sender: { waId: u.waId },
        type: "text",
        command: "help",
      });
      await h.nats.publish(subjects.inbound(keyOf(u)), payload, asWebhook(subjects.inbound(keyOf(u)), payload, id));
      const [dead] = await until("the MAX_DELIVERIES advisory to move it", async () => {
        const d = await streamMessages(h.nats, STREAMS.deadLetter, subjects.deadLetter(keyOf(u)));
        return d.length ? d : undefined;
      });
      assert.equal(JSON.parse(dead?.data as string).id, id);
      assert.match(dead?.headers["Unmix-Reason"] ?? "", /no acknowledgement/);
      assert.equal((await metrics.deadLettered.get()).values.find((v) => v.labels.reason === "unacknowledged")?.value, 1);
      assert.deepEqual(await streamMessages(h.nats, STREAMS.inbound, subjects.inbound(keyOf(u))), [], "not left in the inbound stream");
    } finally {
      await hung.stop(100);
      await h.restart({ WORKER_MAX_DELIVER: "3", WORKER_ACK_WAIT_SECONDS: "5" });
    }
  });

  test("while NATS is down the webhook answers 503; after Meta's redelivery exactly one job exists", async () => {
    const u = newUser();
    const nats = h.stack.nats as NonNullable<typeof h.stack.nats>;
    await nats.crash();
    let restarted = false;
    try {
      const during = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(100), from: u });
      assert.deepEqual(
        during.deliveries.map((d) => d.status),
        [503],
      );
      await nats.start();
      restarted = true;
      await until("the ingress to be ready again", async () => ((await fetch(`${h.ingress.url}/readyz`)).status === 200 ? true : undefined));
      await until("the observer to reconnect", async () => ((await h.nats.ping()) ? true : undefined));
      assert.deepEqual(
        (await h.sim.deliverRaw(during.body)).map((d) => d.status),
        [200],
      );
      assert.equal(await handled(during.id), "job_created");
      assert.equal((await jobsOf(u)).length, 1);
    } finally {
      if (!restarted) await nats.start();
    }
  });
});

describe("reply receipts (the controller's at-most-once window)", () => {
  const receiptOf = async (name: string) => parseReceipt((await h.jobs.get(name))?.metadata.annotations?.[REPLY_RECEIPT_ANNOTATION]);
  async function jobFor(u: User): Promise<string> {
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(200 + seq), from: u });
    assert.equal(await handled(sent.id), "job_created");
    return separationJobName(sent.id);
  }
  const receipts = (outcome: string) => metric("unmix_worker_messages_total", `type="receipt",outcome="${outcome}"`);

  test("P10: a sent/delivered status echoing a SeparationJob's name is recorded on it while its reply is Sending: the first, with no wamid", async () => {
    const u = newUser();
    const name = await jobFor(u);
    const sj = await h.jobs.get(name);
    await h.jobs.patchStatus(name, sj?.metadata.resourceVersion ?? "", { reply: { state: "Sending", kind: "Result", attemptedAt: new Date().toISOString() } });
    const wamid = `wamid.HBgNNDkxNzYxMjAwMDA4ORUCABEYEj${seq}`;
    await h.sim.sendReceipt({ messageId: wamid, status: "sent", recipient: u.waId as string, callbackData: name });
    const receipt = await until("the receipt on the SeparationJob", () => receiptOf(name));
    assert.equal(receipt.status, "sent");
    const annotations = JSON.stringify((await h.jobs.get(name))?.metadata.annotations);
    assert.ok(!annotations.includes(wamid) && !annotations.includes(u.waId as string), "no wamid, no number");
    // `delivered` (and Meta's redelivery of `sent`) change nothing: the first receipt is the one kept
    const unneededBefore = await receipts("unneeded");
    await h.sim.sendReceipt({ messageId: wamid, status: "delivered", recipient: u.waId as string, callbackData: name });
    await h.sim.sendReceipt({ messageId: wamid, status: "sent", recipient: u.waId as string, callbackData: name }, { duplicates: 1 });
    await sleep(500);
    assert.equal((await receiptOf(name))?.status, "sent");
    assert.equal(await receipts("unneeded"), unneededBefore, "one job's later receipts are deduplicated before the worker");
  });

  test("a receipt for a reply not in Sending, for a job that is gone, or with foreign callback data writes nothing", async () => {
    const u = newUser();
    const name = await jobFor(u);
    const [unneeded, gone] = [await receipts("unneeded"), await receipts("gone")];
    await h.sim.sendReceipt({ messageId: "wamid.NOTSENDING", status: "delivered", recipient: u.waId as string, callbackData: name });
    await h.sim.sendReceipt({ messageId: "wamid.GONE", status: "sent", recipient: u.waId as string, callbackData: separationJobName("wamid.NEVER") });
    await h.sim.sendReceipt({ messageId: "wamid.FOREIGN", status: "sent", recipient: u.waId as string, callbackData: "campaign-42" });
    await h.sim.sendReceipt({ messageId: "wamid.FAILED", status: "failed", recipient: u.waId as string, callbackData: name });
    await until("both receipts handled", async () => ((await receipts("unneeded")) > unneeded && (await receipts("gone")) > gone ? true : undefined));
    assert.equal(await receiptOf(name), undefined);
    assert.equal((await h.jobs.get(name))?.metadata.annotations?.[REPLY_RECEIPT_ANNOTATION], undefined);
  });
});

describe("admin endpoints (separate listener, bearer token)", () => {
  const admin = (path: string, init: RequestInit = {}, token = h.adminToken) =>
    fetch(`${h.ingress.adminUrl}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init.headers } });

  test("they are not on the public listener, and refuse a missing or wrong token", async () => {
    assert.notEqual(h.ingress.adminUrl, h.ingress.url);
    assert.equal((await fetch(`${h.ingress.url}/admin/jobs`)).status, 404);
    assert.equal((await fetch(`${h.ingress.adminUrl}/admin/jobs`)).status, 401);
    assert.equal((await admin("/admin/jobs", {}, `${h.adminToken}x`)).status, 401);
    assert.equal((await admin("/admin/purge", { method: "POST", body: JSON.stringify({ phone: "+49 176 0000" }) }, "wrong")).status, 401);
  });

  test("GET /admin/jobs shows recent jobs with the profile name, and no phone number", async () => {
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(110), from: u });
    assert.equal(await handled(sent.id), "job_created");
    const res = await admin("/admin/jobs?limit=500");
    assert.equal(res.status, 200);
    const text = await res.text();
    const { jobs } = JSON.parse(text) as { jobs: { name: string; profileName: string; user: string; kind: string }[] };
    const mine = jobs.find((j) => j.name === separationJobName(sent.id));
    assert.deepEqual([mine?.profileName, mine?.user, mine?.kind], [u.name, keyOf(u), "audio"]);
    for (const p of phones) assert.ok(!text.includes(p), "no phone number in the dashboard");
  });

  test("one malformed SeparationJob (the API server's schema lets it in, ours does not) is skipped and counted by the job list, and deleted by the user's delete", async () => {
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(115), from: u });
    assert.equal(await handled(sent.id), "job_created");
    // created straight through the API server: a timestamp with an offset passes `format: date-time`, not zod
    const kc = h.stack.kube?.kc as NonNullable<typeof h.stack.kube>["kc"];
    const malformed = `sj-malformed-${seq}`;
    await kc.makeApiClient(k8s.CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NAMESPACE,
      plural: PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name: malformed, labels: { [USER_LABEL]: keyOf(u) } },
        spec: {
          message: { id: `wamid.MALFORMED${seq}`, timestamp: "2026-12-01T10:00:00+02:00", phoneNumberId: h.sim.phoneNumberId },
          sender: { waId: u.waId },
          media: { id: "1", mimeType: "audio/ogg", sha256: "x", kind: "audio" },
          output: { format: "ogg-opus" },
        },
      },
    });
    const before = await metric("unmix_invalid_separationjobs_total", "");
    const res = await admin("/admin/jobs?limit=500");
    assert.equal(res.status, 200);
    const text = await res.text();
    const listed = JSON.parse(text) as { invalid: number; jobs: { name: string }[] };
    assert.ok(listed.invalid >= 1, text.slice(0, 200));
    assert.ok(
      listed.jobs.some((j) => j.name === separationJobName(sent.id)),
      "the valid ones are still listed",
    );
    assert.ok(!listed.jobs.some((j) => j.name === malformed));
    assert.ok((await metric("unmix_invalid_separationjobs_total", "")) >= before + 1);
    const line = h.logs.lines.find((l) => l.includes("invalid SeparationJob skipped") && l.includes(malformed));
    assert.ok(line, "a log line names it");
    assert.match(line, /message\.timestamp/);
    assert.ok(!line.includes(u.waId as string) && !line.includes(u.name), "and nothing personal");

    // pages: a small page size walks the same list in several requests, invalid items reported per page
    const paged = new SeparationJobs(kc, NAMESPACE, { pageSize: 1 });
    const pages = [];
    for await (const page of paged.pages(`${USER_LABEL}=${keyOf(u)}`)) pages.push(page);
    assert.deepEqual(pages.map((p) => [p.items.length, p.invalid.map((i) => i.name)]).sort(), [
      [0, [malformed]],
      [1, []],
    ]);

    // the user's delete: both are theirs and both go, the malformed one by name
    const del = await h.sim.sendUserMessage({ type: "text", body: "delete", from: u });
    const reply = await h.sim.waitForMessage(replyTo(del.id));
    assert.equal(reply.text, replies.deleted({ results: 0, jobs: 2, optedOut: false, auditDays: 30 }));
    const left = await h.jobs.list(`${USER_LABEL}=${keyOf(u)}`);
    assert.deepEqual([left.items.length, left.invalid.length], [0, 0], "nothing of theirs is left");
  });

  test("P14: POST /admin/purge by phone number erases that user's data without messaging them and opts them out; by BSUID finds the same user", async () => {
    for (const by of ["phone", "userId"] as const) {
      const u = newUser({ withBsuid: true });
      const input = ogg(120 + (by === "phone" ? 0 : 1));
      const key = await seedCache(input, "ogg-opus", ogg(125), "audio/ogg");
      const hit = await h.sim.sendUserMessage({ type: "audio", bytes: input, from: u });
      assert.equal(await handled(hit.id), "cache_hit");
      const miss = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(130 + seq), from: u });
      assert.equal(await handled(miss.id), "job_created");
      const sentBefore = h.sim.sentMessages().length;
      const body = by === "phone" ? { phone: `+${u.waId}` } : { userId: u.userId };
      const res = await admin("/admin/purge", { method: "POST", body: JSON.stringify(body) });
      assert.equal(res.status, 200);
      const erased = (await res.json()) as { results: number; jobs: number; keyValueEntries: number; optedOut: boolean };
      assert.equal(erased.results, 1, by);
      assert.equal(erased.jobs, 1, by);
      assert.ok(erased.keyValueEntries >= 2, by);
      assert.equal(await h.store.stat(resultKey(key)), undefined);
      assert.equal(await h.jobs.get(separationJobName(miss.id)).then((j) => j?.metadata.deletionTimestamp ?? j), undefined);
      for (const id of [u.waId, u.userId]) assert.equal(await kvHas(BUCKETS.active, userKey(id as string, USER_KEY_SECRET)), false);
      assert.equal(h.sim.sentMessages().length, sentBefore, "the user is not messaged");
      // and opted out under both ids, so their data does not build up again
      assert.equal(erased.optedOut, true, by);
      for (const id of [u.waId, u.userId]) assert.equal(await kvHas(BUCKETS.optOut, userKey(id as string, USER_KEY_SECRET)), true, by);
      const after = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(140 + seq), from: u });
      assert.equal(await handled(after.id), "opted_out", by);
    }
    const bad = await admin("/admin/purge", { method: "POST", body: JSON.stringify({ phone: "abc" }) });
    assert.equal(bad.status, 400);
  });

  test("P15: a broadcast campaign sends text inside the 24-hour window and the template outside it, skipping opted-out users", async () => {
    const recent = newUser();
    const old = newUser({ bsuidOnly: true });
    const stopped = newUser();
    await handled((await h.sim.sendUserMessage({ type: "text", body: "help", from: recent })).id);
    await handled((await h.sim.sendUserMessage({ type: "text", body: "stop", from: stopped })).id);
    // a user last seen two days ago (their activity entry, written as the worker would have)
    const twoDaysAgo = Date.now() - 2 * 24 * 3600_000;
    const users = new UserState(h.nats, { secret: USER_KEY_SECRET, jobsPerHour: 3, now: () => twoDaysAgo });
    await users.touch(users.keysOf(old), old, h.sim.phoneNumberId);
    h.sim.setTemplate("policy_update", "en", "APPROVED");
    const since = h.sim.sentMessages().length;
    const res = await admin("/admin/broadcasts", {
      method: "POST",
      body: JSON.stringify({
        text: "Our data policy changed: see the link.",
        template: { name: "policy_update", languageCode: "en" },
        idempotencyKey: `policy-${seq}`,
      }),
    });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    const done = await until(
      "the campaign to finish",
      async () => {
        const c = (await (await admin(`/admin/broadcasts/${id}`)).json()) as { state: string; sent: number; byKind: { text: number; template: number } };
        return c.state === "Finished" ? c : undefined;
      },
      60_000,
    );
    assert.ok(done.byKind.text >= 1 && done.byKind.template >= 1, JSON.stringify(done));
    const sent = h.sim.sentMessages().slice(since);
    assert.deepEqual(
      sent.filter((m) => m.to === recent.waId).map((m) => [m.type, m.text]),
      [["text", "Our data policy changed: see the link."]],
    );
    assert.deepEqual(
      sent.filter((m) => m.to === old.userId).map((m) => [m.type, m.template?.name]),
      [["template", "policy_update"]],
    );
    assert.equal(sent.filter((m) => m.to === stopped.waId).length, 0, "an opted-out user gets nothing");
    assert.ok(
      sent.filter((m) => m.to === recent.waId || m.to === old.userId).every((m) => m.status === "accepted"),
      "nothing sent outside the window as text",
    );
  });
});

describe("shutdown", () => {
  test("stopping drains in-flight work: the message being handled is answered and acknowledged, nothing is left pending", async () => {
    const u = newUser();
    h.sim.delayNext("messages", 1500, 2);
    const sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    await until("the worker to be busy with it", async () => ((await metric("unmix_worker_in_flight", "")) === 0 ? undefined : true));
    await h.ingress.stop();
    assert.ok(
      repliesTo(sent.id).some((m) => m.text === replies.help),
      "answered before the process stopped",
    );
    const info = await h.nats.jsm.consumers.info(STREAMS.inbound, "worker");
    assert.deepEqual([info.num_ack_pending, info.num_pending, info.num_redelivered], [0, 0, info.num_redelivered]);
    assert.equal(await handled(sent.id), "help");
    await h.restart();
  });
});

describe("privacy of the logs", () => {
  test("no phone number and no profile name appears in any log line, masked or hashed ones only", () => {
    const logs = h.logs.text();
    assert.ok(h.logs.lines.length > 50, "the ingress did log");
    for (const phone of phones) {
      assert.ok(!logs.includes(phone), `phone number ${phone} in the logs`);
      assert.ok(!logs.includes(phone.slice(2)), `national part of ${phone} in the logs`);
    }
    for (const name of names) assert.ok(!logs.includes(name), `profile name ${name} in the logs`);
    assert.ok(!/wamid\./.test(logs), "no wamid (it encodes the number) in the logs");
  });
});
