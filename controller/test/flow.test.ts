// Every step and every failure class, on the real local stack with the WhatsApp simulator: what the
// user gets back, what `kubectl describe sj` says, and that nothing of theirs is left behind.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { findCondition } from "@unmix/api/conditions";
import { modelId } from "@unmix/api/models";
import { replies } from "@unmix/core/replies";
import { ResultCache, resultKey } from "@unmix/core/result-cache";
import { normalizeSha256 } from "@unmix/core/sha256";
import {
  eventsOf,
  finished,
  type Harness,
  type InProcessController,
  repliesTo,
  startController,
  startHarness,
  storedFor,
  succeeded,
  until,
} from "./harness.ts";

let h: Harness;
let ns: string;
let controller: InProcessController;

before(async () => {
  h = await startHarness({ gpus: 4 });
  ns = await h.namespace();
  controller = await startController(h, h.env(ns, { MAX_INPUT_BYTES: String(64 * 1024), MAX_DURATION_SECONDS: "300" }));
});
after(async () => {
  await controller?.stop();
  await h?.stop();
});

/** The user's view: exactly one reply quoting their message. */
async function theReply(wamid: string) {
  const reply = await h.sim.waitForMessage((m) => m.replyTo === wamid && m.type !== "reaction", 30_000);
  return reply;
}

describe("a voice note", () => {
  test("comes back as a voice note quoting the original, cached, with nothing left behind", async () => {
    const sent = await h.userSends(ns, { content: "a voice note with music", voice: true });
    const sj = await finished(h, ns, sent.name);

    // the user: one reply, quoting their message, a voice note holding the cleaned audio
    const reply = await theReply(sent.wamid);
    assert.equal(reply.type, "audio");
    assert.equal(reply.voice, true);
    assert.equal(reply.status, "accepted");
    assert.equal(repliesTo(h.sim, sent.wamid).length, 1);
    const media = h.sim.media(reply.mediaId as string);
    assert.equal(media?.mimeType, "audio/ogg");
    assert.match(media?.bytes.toString("latin1") ?? "", /^OggS.*cleaned:a voice note with music$/s);
    const reaction = await h.sim.waitForMessage((m) => m.type === "reaction" && m.reaction?.messageId === sent.wamid);
    assert.equal(reaction.reaction?.emoji, "✅");

    // the status tells the story
    assert.equal(succeeded(sj)?.status, "True");
    for (const type of ["MediaFetched", "JobCreated", "Scheduled", "Separated", "Replied"])
      assert.equal(findCondition(sj.status?.conditions, type)?.status, "True", type);
    assert.ok(sj.status?.conditions?.every((c) => c.observedGeneration === sj.metadata.generation && c.lastTransitionTime));
    assert.equal(sj.status?.jobName, sent.name);
    assert.equal(sj.status?.reply?.state, "Sent");
    assert.equal(sj.status?.reply?.messageId, reply.id);
    assert.equal(sj.status?.result?.mimeType, "audio/ogg");
    assert.equal(sj.status?.result?.realTimeFactor, 0.05);
    assert.equal(sj.status?.result?.mediaSeconds, 4.2);
    assert.ok((sj.status?.result?.totalSeconds ?? -1) >= 0);
    for (const step of ["fetchedAt", "jobCreatedAt", "scheduledAt", "separatedAt", "repliedAt", "finishedAt"] as const)
      assert.ok(sj.status?.steps?.[step], step);

    // the model that made it, named with its engine and version
    assert.equal(sj.status?.result?.engine, "demucs");
    assert.equal(sj.status?.result?.modelId, "htdemucs-4.1.0");

    // cached for a re-send (by sha256 + format + model id, with the WhatsApp media id), nothing else kept
    const key = { sha256: normalizeSha256(sj.spec.media.sha256), format: "ogg-opus" as const, model: modelId("htdemucs") };
    const hit = await new ResultCache(h.store, 24 * 3600_000).lookup(key);
    assert.equal(hit?.whatsappMediaId, reply.mediaId);
    assert.equal(sj.status?.result?.cacheKey, resultKey(key));
    assert.deepEqual(await storedFor(h.store, sent.name), [], "input and intermediates deleted");

    // the Job was the real thing: a GPU, owned by the SeparationJob, and its pod could not do more
    const job = await h.batch.readNamespacedJob({ name: sent.name, namespace: ns });
    assert.equal(job.metadata?.ownerReferences?.[0]?.uid, sj.metadata.uid);
    assert.equal(job.spec?.template.spec?.containers[0]?.resources?.limits?.["nvidia.com/gpu"], "1");
    const env = Object.fromEntries((job.spec?.template.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(env.TRACEPARENT?.split("-")[1], "4bf92f3577b34da6a3ce929d0e0e4736", "the message's trace goes into the pod");
    assert.match(env.INPUT_URL ?? "", /X-Amz-Signature=/);

    // kubectl describe sj
    const events = await until("the events", async () => {
      const e = await eventsOf(h.core, ns, sent.name);
      return e.some((x) => x.reason === "Succeeded") ? e : undefined;
    });
    const reasons = events.map((e) => e.reason);
    for (const r of ["Fetched", "Created", "Scheduled", "Separated", "Sent", "Succeeded"]) assert.ok(reasons.includes(r), `event ${r} in ${reasons.join(",")}`);
    assert.ok(!JSON.stringify(events).includes("4917623456789"), "no phone number in events");
    assert.ok(!JSON.stringify(events).includes("wamid."), "no message id (it embeds the number) in events");
    assert.ok(!JSON.stringify(sj.status?.conditions).includes("wamid."), "nor in conditions");
  });
});

describe("a video", () => {
  test("comes back as an MP4 video reply", async () => {
    const sent = await h.userSends(ns, { content: "a video with music", type: "video" });
    const sj = await finished(h, ns, sent.name);
    assert.equal(succeeded(sj)?.status, "True");
    const reply = await theReply(sent.wamid);
    assert.equal(reply.type, "video");
    assert.equal(h.sim.media(reply.mediaId as string)?.mimeType, "video/mp4");
    assert.deepEqual(await storedFor(h.store, sent.name), []);
  });
  test("an MP3 audio file comes back as audio, not as a voice note", async () => {
    const sent = await h.userSends(ns, { content: "an mp3 with music", mimeType: "audio/mpeg" });
    await finished(h, ns, sent.name);
    const reply = await theReply(sent.wamid);
    assert.equal(reply.type, "audio");
    assert.equal(reply.voice, false);
    assert.equal(h.sim.media(reply.mediaId as string)?.mimeType, "audio/mpeg");
  });
});

describe("fetching the media", () => {
  test("an expired media URL (404) is refreshed and the job goes on", async () => {
    h.sim.failNext("media-download", { httpStatus: 404 });
    const sent = await h.userSends(ns, { content: "fetched on the second URL" });
    const sj = await finished(h, ns, sent.name);
    assert.equal(succeeded(sj)?.status, "True");
    assert.equal(repliesTo(h.sim, sent.wamid).length, 1);
  });
  test("a Graph API outage is retried", async () => {
    h.sim.failNext("media-info", "temporarily-unavailable", 2);
    const sent = await h.userSends(ns, { content: "fetched after an outage" });
    assert.equal(succeeded(await finished(h, ns, sent.name))?.status, "True");
  });
});

/** A failure: the user is told in plain words, once, quoting their message; nothing is left behind. */
async function expectFailure(o: Parameters<Harness["userSends"]>[1], cls: string, text: string) {
  const sent = await h.userSends(ns, o);
  const sj = await finished(h, ns, sent.name);
  const s = succeeded(sj);
  assert.equal(s?.status, "False");
  assert.equal(s?.reason, cls);
  assert.equal(sj.status?.failure?.class, cls);
  const reply = await theReply(sent.wamid);
  assert.equal(reply.type, "text");
  assert.equal(reply.text, text);
  assert.equal(repliesTo(h.sim, sent.wamid).length, 1);
  const reaction = await h.sim.waitForMessage((m) => m.type === "reaction" && m.reaction?.messageId === sent.wamid);
  assert.equal(reaction.reaction?.emoji, "❌");
  assert.deepEqual(await storedFor(h.store, sent.name), [], "input and intermediates deleted");
  const events = await until("a Warning event", async () => {
    const e = await eventsOf(h.core, ns, sent.name);
    return e.some((x) => x.type === "Warning" && x.reason === cls) ? e : undefined;
  });
  assert.ok(events.length > 0);
  return { sent, sj };
}

describe("every failure class reaches the user in plain words", () => {
  test("undecodable input (exit 10): BadInput, not retried", async () => {
    const { sent } = await expectFailure({ content: "EXIT=10\nffmpeg: invalid data found" }, "BadInput", replies.failure.BadInput);
    const job = await h.batch.readNamespacedJob({ name: sent.name, namespace: ns });
    assert.equal(job.status?.failed, 1, "podFailurePolicy failed the Job at once");
  });
  test("no audio stream (exit 11): NoAudio", async () => {
    await expectFailure({ content: "EXIT=11", type: "video" }, "NoAudio", replies.failure.NoAudio);
  });
  test("too long (exit 12): TooLong, with the limit in minutes", async () => {
    await expectFailure({ content: "EXIT=12\n900 s" }, "TooLong", replies.failure.TooLong(5));
  });
  test("result too large (exit 13): OutputTooLarge", async () => {
    await expectFailure({ content: "EXIT=13" }, "OutputTooLarge", replies.failure.OutputTooLarge);
  });
  test("silent (exit 14): Silent", async () => {
    await expectFailure({ content: "EXIT=14" }, "Silent", replies.failure.Silent);
  });
  test("a transient failure is retried, then Internal when the retries run out", async () => {
    const { sent, sj } = await expectFailure({ content: "EXIT=1\nCUDA error: out of memory" }, "Internal", replies.failure.Internal);
    const job = await h.batch.readNamespacedJob({ name: sent.name, namespace: ns });
    assert.equal(job.status?.failed, 2, "one try plus backoffLimit=1 retry");
    assert.match(sj.status?.failure?.message ?? "", /CUDA error/);
  });
  test("media WhatsApp no longer has: MediaUnavailable, no Job", async () => {
    const { sent } = await expectFailure({ content: "whatever", mediaId: "999999999999999" }, "MediaUnavailable", replies.failure.MediaUnavailable);
    await assert.rejects(h.batch.readNamespacedJob({ name: sent.name, namespace: ns }), (e: { code?: number }) => e.code === 404);
  });
  test("media larger than the limit: TooLarge", async () => {
    await expectFailure({ content: Buffer.alloc(70 * 1024, 7) }, "TooLarge", replies.failure.TooLarge(0.1));
  });
});

describe("a Job that is not ours holds the SeparationJob's name", () => {
  // someone else's Job (no labels: not in the controller's cache, found on create), and one forging
  // our labels under another controller (in the cache): both left untouched, the user told once
  for (const forged of [false, true]) {
    test(`${forged ? "with our labels forged" : "without our labels"}: it survives untouched, the SeparationJob fails as JobNameTaken, one reply`, async () => {
      const m = await h.userMessage({ content: "a voice note whose Job name is taken" });
      const foreign = await h.batch.createNamespacedJob({
        namespace: ns,
        body: {
          metadata: {
            name: m.name,
            ...(forged ? { labels: { "app.kubernetes.io/managed-by": "unmix-controller", "unmix.dev/separationjob": m.name } } : {}),
          },
          spec: {
            suspend: true,
            template: { spec: { restartPolicy: "Never", containers: [{ name: "other", image: "someone/else" }] } },
          },
        },
      });
      await h.sjs(ns).create(m.job);
      const sj = await finished(h, ns, m.name);
      assert.deepEqual([succeeded(sj)?.status, succeeded(sj)?.reason], ["False", "Internal"]);
      const created = findCondition(sj.status?.conditions, "JobCreated");
      assert.deepEqual([created?.status, created?.reason], ["False", "JobNameTaken"]);
      const reply = await theReply(m.wamid);
      assert.equal(reply.text, replies.failure.Internal);
      assert.equal(repliesTo(h.sim, m.wamid).length, 1);
      await until("a Warning event naming the reason", async () =>
        (await eventsOf(h.core, ns, m.name)).some((e) => e.type === "Warning" && e.reason === "JobNameTaken") ? true : undefined,
      );
      assert.deepEqual(await storedFor(h.store, m.name), [], "input deleted");
      const after = await h.batch.readNamespacedJob({ name: m.name, namespace: ns });
      assert.equal(after.metadata?.uid, foreign.metadata?.uid, "the same Job");
      assert.equal(after.metadata?.deletionTimestamp, undefined, "not being deleted");
      assert.equal(after.spec?.suspend, true, "not changed");
      assert.deepEqual([after.metadata?.labels, after.metadata?.ownerReferences], [foreign.metadata?.labels, foreign.metadata?.ownerReferences], "not adopted");
    });
  }
});

describe("deleting a SeparationJob mid-flight", () => {
  test("removes its input, and the garbage collector its Job", async () => {
    const sent = await h.userSends(ns, { content: "SLEEP=30" });
    await until("the job to run", async () => ((await h.sjs(ns).get(sent.name))?.status?.steps?.scheduledAt ? true : undefined));
    assert.deepEqual(await storedFor(h.store, sent.name), [`inputs/${sent.name}`]);
    await h.sjs(ns).delete(sent.name);
    await until("its input to go", async () => ((await storedFor(h.store, sent.name)).length === 0 ? true : undefined));
    await until("its Job to go", async () => {
      try {
        await h.batch.readNamespacedJob({ name: sent.name, namespace: ns });
        return undefined;
      } catch (e) {
        return (e as { code?: number }).code === 404 ? true : undefined;
      }
    });
    assert.equal(repliesTo(h.sim, sent.wamid).length, 0);
  });
});
