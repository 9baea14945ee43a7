// Every step and every failure class, on the real local stack with the WhatsApp simulator: what the
// user gets back, what `kubectl describe sj` says, and that nothing of theirs is left behind.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { findCondition } from "@unmix/api/conditions";
import { modelId } from "@unmix/api/models";
import { API_VERSION, GROUP, KIND, PLURAL, USER_LABEL, VERSION } from "@unmix/api/separationjob";
import { AUDIT_STREAM, refOfSeparationJob } from "@unmix/core/audit";
import { k8s } from "@unmix/core/kube";
import { replies } from "@unmix/core/replies";
import { ResultCache, resultKey } from "@unmix/core/result-cache";
import { normalizeSha256 } from "@unmix/core/sha256";
import { DiscardPolicy } from "nats";
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
  test("P10: comes back as a voice note quoting the original, cached, with nothing left behind", async () => {
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
    assert.ok(!JSON.stringify(sj).includes(reply.id), "the reply's wamid (it embeds the number) is not kept on the SeparationJob");
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
    // the presigned URLs came from a Secret (the `view` role reads Jobs, not Secrets), deleted with who sent it once the reply was out
    assert.equal(env.INPUT_URL, undefined);
    assert.deepEqual(
      job.spec?.template.spec?.containers[0]?.envFrom?.map((f) => f.secretRef?.name),
      [`${sent.name}-urls`],
    );
    const secrets = (await h.core.listNamespacedSecret({ namespace: ns })).items.map((x) => x.metadata?.name);
    assert.deepEqual(
      secrets.filter((n) => n?.startsWith(sent.name)),
      [],
      "the sender and URL Secrets are deleted at finalize",
    );

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
  test("video over 4K or 60 fps (exit 15): VideoTooLarge, the reply naming the limits", async () => {
    await expectFailure({ content: "EXIT=15", type: "video" }, "VideoTooLarge", replies.failure.VideoTooLarge);
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

describe("a SeparationJob whose sender Secret never comes", () => {
  test("P2: fails with a clear reason after FETCH_DEADLINE_SECONDS: nothing fetched, no Job, no reply, nothing stored", async () => {
    const other = await h.namespace();
    const impatient = await startController(h, h.env(other, { FETCH_DEADLINE_SECONDS: "3" }));
    try {
      const m = await h.userMessage({ content: "nobody to answer" });
      // the SeparationJob alone, as a worker killed between its two creates and never redelivered leaves it
      await h.kc.makeApiClient(k8s.CustomObjectsApi).createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: other,
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name: m.name, labels: { [USER_LABEL]: m.job.userKey } }, spec: m.job.spec },
      });
      const sj = await finished(h, other, m.name);
      assert.equal(succeeded(sj)?.status, "False");
      assert.equal(sj.status?.failure?.class, "Internal");
      assert.match(sj.status?.failure?.message ?? "", new RegExp(`^no valid sender Secret ${m.name}-sender within 3 s: nobody to reply to$`));
      assert.notEqual(findCondition(sj.status?.conditions, "MediaFetched")?.status, "True", "the media was not fetched");
      await assert.rejects(h.batch.readNamespacedJob({ name: m.name, namespace: other }), (e: { code?: number }) => e.code === 404);
      assert.equal(repliesTo(h.sim, m.wamid).length, 0);
      assert.deepEqual(await storedFor(h.store, m.name), []);
    } finally {
      await impatient.stop();
    }
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
    // P5: the trail says the job was created and its input deleted with the SeparationJob
    const trail = (await h.auditEntries()).filter((e) => e.ref === refOfSeparationJob(sent.name));
    assert.deepEqual(
      trail.map((e) => [e.event, e.reason]),
      [
        ["job-created", undefined],
        ["input-deleted", "deleted"],
      ],
    );
  });
});

describe("P5: the audit trail", () => {
  const entriesOf = async (name: string) => (await h.auditEntries()).filter((e) => e.ref === refOfSeparationJob(name));
  const noPersonalData = (entries: unknown[], sent: { wamid: string }) => {
    const raw = JSON.stringify(entries);
    for (const secret of [sent.wamid, "wamid.", h.sim.defaultUser.waId as string]) assert.ok(!raw.includes(secret), `no ${secret} in the trail`);
  };

  test("P5: a message's lifecycle yields job created, replied and input deleted, once each, with no personal data", async () => {
    const sent = await h.userSends(ns, { content: "an audited voice note", voice: true });
    await finished(h, ns, sent.name);
    const entries = await until("the entries", async () => {
      const e = await entriesOf(sent.name);
      return e.length >= 3 ? e : undefined;
    });
    assert.deepEqual(
      entries.map((e) => [e.event, e.reason]),
      [
        ["job-created", undefined],
        ["replied", "sent"],
        ["input-deleted", "finished"],
      ],
    );
    noPersonalData(entries, sent);
  });

  test("P5: a failed message is audited with its failure class and how its reply ended", async () => {
    const { sent } = await expectFailure({ content: "EXIT=14" }, "Silent", replies.failure.Silent);
    const entries = await until("the entries", async () => {
      const e = await entriesOf(sent.name);
      return e.length >= 3 ? e : undefined;
    });
    assert.deepEqual(
      entries.map((e) => [e.event, e.class, e.reason]),
      [
        ["job-created", undefined, undefined],
        ["failed", "Silent", "sent"],
        ["input-deleted", undefined, "finished"],
      ],
    );
  });

  test("P5: while the audit stream refuses writes no step is marked done; once it takes them, the message finishes with each entry once", async () => {
    const jsm = await h.nats.jetstreamManager();
    const info = await jsm.streams.info(AUDIT_STREAM);
    await jsm.streams.update(AUDIT_STREAM, { discard: DiscardPolicy.New, max_msgs: Math.max(info.state.messages, 1) });
    let sent: { name: string; wamid: string };
    try {
      sent = await h.userSends(ns, { content: "audited while the trail is down" });
      // the Job may run, but JobCreated is not recorded without its entry
      await new Promise((r) => setTimeout(r, 4000));
      const sj = await h.sjs(ns).get(sent.name);
      assert.notEqual(findCondition(sj?.status?.conditions, "JobCreated")?.status, "True", "not marked created");
      assert.equal(succeeded(sj as never)?.status === "True", false, "not finished");
      assert.equal(repliesTo(h.sim, sent.wamid).length, 0, "not answered");
    } finally {
      await jsm.streams.update(AUDIT_STREAM, { discard: info.config.discard, max_msgs: info.config.max_msgs });
    }
    await finished(h, ns, sent.name);
    const entries = await until("the entries", async () => {
      const e = await entriesOf(sent.name);
      return e.length >= 3 ? e : undefined;
    });
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(
      (await entriesOf(sent.name)).map((e) => e.event),
      ["job-created", "replied", "input-deleted"],
    );
    assert.equal(entries.length, 3);
    assert.equal(repliesTo(h.sim, sent.wamid).length, 1, "answered once");
  });
});

describe("every stage has a maximum age, on a running controller whose clock is moved", () => {
  test("P11: a reply WhatsApp keeps refusing (our token expired) is given up after MAX_AGE_REPLYING_SECONDS, and the input and intermediates are deleted", async () => {
    const ns2 = await h.namespace();
    let offsetMs = 0;
    const late = await startController(h, h.env(ns2, { RESYNC_SECONDS: "2" }), { clock: () => new Date(Date.now() + offsetMs) });
    h.sim.failNext("messages", "token-expired", 1000);
    try {
      const sent = await h.userSends(ns2, { content: "a reply that cannot be sent" });
      const stuck = await until(
        "the reply to be refused",
        async () => {
          const sj = await h.sjs(ns2).get(sent.name);
          return findCondition(sj?.status?.conditions, "Replied")?.reason === "Refused" ? sj : undefined;
        },
        60_000,
      );
      assert.equal(findCondition(stuck.status?.conditions, "Separated")?.status, "True");
      assert.ok((await storedFor(h.store, sent.name)).length > 0, "while it waits, the input and the job's output are kept");

      offsetMs = 6 * 3600_000 + 60_000; // MAX_AGE_REPLYING_SECONDS (6 h) and a minute
      const sj = await finished(h, ns2, sent.name, 120_000);
      assert.equal(succeeded(sj)?.status, "False");
      assert.equal(succeeded(sj)?.reason, "ReplyFailed");
      assert.match(findCondition(sj.status?.conditions, "Replied")?.message ?? "", /no reply could be sent within 6 h/);
      assert.deepEqual(await storedFor(h.store, sent.name), [], "input and intermediates deleted");
      assert.equal(repliesTo(h.sim, sent.wamid).length, 0, "nothing was sent, and nothing will be");
    } finally {
      h.sim.clearFaults();
      await late.stop();
    }
  });
});
