// Two replicas: the standby takes over when the leader dies (SIGKILL) or steps down (SIGTERM), and
// finishes the work with one reply per message. Without leader election at all (two replicas that
// both think they lead), the resourceVersion guard still lets only one of them send.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { k8s } from "@unmix/core/kube";
import { type ChildController, finished, type Harness, repliesTo, spawnController, startHarness, storedFor, succeeded, until } from "./harness.ts";

let h: Harness;
let coord: k8s.CoordinationV1Api;
const running: ChildController[] = [];

before(async () => {
  h = await startHarness({ gpus: 8 });
  coord = h.kc.makeApiClient(k8s.CoordinationV1Api);
});
after(async () => {
  for (const c of running) await c.kill("SIGKILL");
  await h?.stop();
});

const LEASE = { LEADER_ELECT: "true", LEASE_DURATION_SECONDS: "4", RENEW_DEADLINE_SECONDS: "3", RETRY_PERIOD_SECONDS: "1" };

async function holder(ns: string): Promise<{ holder: string; transitions: number } | undefined> {
  try {
    const l = await coord.readNamespacedLease({ name: "unmix-controller", namespace: ns });
    return { holder: l.spec?.holderIdentity ?? "", transitions: l.spec?.leaseTransitions ?? 0 };
  } catch {
    return undefined;
  }
}

async function pair(ns: string) {
  const a = spawnController(h, h.env(ns, { ...LEASE, POD_NAME: "replica-a" }));
  const b = spawnController(h, h.env(ns, { ...LEASE, POD_NAME: "replica-b" }));
  running.push(a, b);
  const first = await until("a leader", async () => {
    const l = await holder(ns);
    return l?.holder ? l : undefined;
  });
  const [leader, standby] = first.holder === "replica-a" ? [a, b] : [b, a];
  return { leader, standby, leaderName: first.holder, standbyName: first.holder === "replica-a" ? "replica-b" : "replica-a", first };
}

async function allDone(ns: string, sent: { name: string; wamid: string }[]) {
  for (const s of sent) {
    const sj = await finished(h, ns, s.name, 120_000);
    assert.equal(succeeded(sj)?.status, "True", s.name);
    assert.equal(repliesTo(h.sim, s.wamid).length, 1, `exactly one reply for ${s.name}`);
    assert.deepEqual(await storedFor(h.store, s.name), []);
  }
}

describe("leader election", () => {
  test("the standby takes over when the leader is killed mid-flight, and finishes the work", async () => {
    h.enableReceipts(true);
    const ns = await h.namespace();
    const { leader, standby, standbyName, first } = await pair(ns);
    const sent = [];
    for (let i = 0; i < 4; i++) sent.push(await h.userSends(ns, { content: `SLEEP=3\nfailover ${i}` }));
    await until("the jobs to be created by the leader", async () => {
      const jobs = await h.batch.listNamespacedJob({ namespace: ns });
      return jobs.items.length === sent.length ? true : undefined;
    });
    await leader.kill("SIGKILL");
    const taken = await until("the standby to hold the lease", async () => {
      const l = await holder(ns);
      return l?.holder === standbyName ? l : undefined;
    });
    assert.equal(taken.transitions, first.transitions + 1);
    await allDone(ns, sent);
    assert.equal(standby.proc.exitCode, null, "the new leader keeps running");
    await standby.kill("SIGTERM");
  });

  test("a leader stopped with SIGTERM hands the lease back and the standby carries on", async () => {
    h.enableReceipts(true);
    const ns = await h.namespace();
    const { leader, standby, standbyName, leaderName } = await pair(ns);
    const sent = [await h.userSends(ns, { content: "SLEEP=2\nhandover" })];
    await until("the job", async () => ((await h.batch.listNamespacedJob({ namespace: ns })).items.length === 1 ? true : undefined));
    assert.equal(await leader.kill("SIGTERM"), 0, "a clean exit");
    assert.notEqual((await holder(ns))?.holder, leaderName, "the lease was handed back on the way out, not left to expire");
    await until("the standby to hold the lease", async () => ((await holder(ns))?.holder === standbyName ? true : undefined));
    sent.push(await h.userSends(ns, { content: "after the handover" }));
    await allDone(ns, sent);
    await standby.kill("SIGTERM");
  });
});

describe("without leader election", () => {
  test("two replicas racing on the same SeparationJobs still send one reply each", async () => {
    h.enableReceipts(false);
    const ns = await h.namespace();
    const a = spawnController(h, h.env(ns, { POD_NAME: "racer-a" }));
    const b = spawnController(h, h.env(ns, { POD_NAME: "racer-b" }));
    running.push(a, b);
    const sent = [];
    for (let i = 0; i < 6; i++) sent.push(await h.userSends(ns, { content: `race ${i}` }));
    await allDone(ns, sent);
    for (const s of sent) {
      const pods = await h.core.listNamespacedPod({ namespace: ns, labelSelector: `unmix.dev/separationjob=${s.name}` });
      assert.equal(pods.items.length, 1, "one Job, run once");
    }
    await a.kill("SIGTERM");
    await b.kill("SIGTERM");
  });
});
