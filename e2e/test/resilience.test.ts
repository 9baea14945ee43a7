// The fault matrix: the whole product on the real stack (the webhook and the worker as two
// processes, the controller, NATS JetStream, MinIO, kube-apiserver with the real Job controller,
// the node agent, the WhatsApp simulator), one fault injected in the middle of the flow per
// scenario, and then what users saw, counted: messages sent, replies, duplicates, lost, and what was
// left behind (objects under inputs/ and work/, Jobs, Secrets). Every row must read 0 duplicates,
// 0 lost, 0 leftovers: each message ends in exactly one reply (the result or a failure notice).
//
// The job pod is controller/test/standin-job.sh (the job image's contract without the GPU work):
// the faults are in the plumbing, and a stand-in lets a scenario hold a job running ("SLEEP=<s>")
// while a component dies. `make resilience` (UNMIX_RESILIENCE=all) runs every scenario and writes
// the table to docs/resilience.md; `make test` runs the rows marked quick (one per component).
import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { findCondition } from "@unmix/api/conditions";
import { separationJobName } from "@unmix/api/separationjob";
import { cacheDir, type Product, ROOT, startProduct, until } from "../src/product.ts";
import type { SentMessage } from "../src/whatsapp-sim/index.ts";

const FULL = process.env.UNMIX_RESILIENCE === "all";
const OUT = process.env.UNMIX_RESILIENCE_OUT ?? (FULL ? join(ROOT, "docs/resilience.md") : undefined);
/** The controller's wait for a receipt (REPLY_CONFIRM_SECONDS) and its Graph API timeout, short for the suite. */
const CONFIRM_S = 4;
const GRAPH_TIMEOUT_S = 2;
const FAILPOINTS = [
  "fetch:stored",
  "fetch:recorded",
  "job:created",
  "job:recorded",
  "separated:recorded",
  "reply:uploaded",
  "reply:sending",
  "reply:sent",
  "reply:recorded",
  "finalize:cached",
  "finalize:cleaned",
  "failure:recorded",
] as const;

let p: Product;
before(async () => {
  p = await startProduct({
    gpus: 2,
    splitIngress: true,
    jobImage: { entrypoint: ["/bin/sh", join(ROOT, "controller/test/standin-job.sh")] },
    workerEnv: { RATE_LIMIT_PER_HOUR: "1000", WORKER_ACK_WAIT_SECONDS: "3", WORKER_BACKOFF_SECONDS: "1,1,2,5,10" },
    controllerEnv: {
      REPLY_CONFIRM_SECONDS: String(CONFIRM_S),
      WHATSAPP_TIMEOUT_SECONDS: String(GRAPH_TIMEOUT_S),
      JOB_TTL_SECONDS_AFTER_FINISHED: "1",
      JOB_MEMORY_LIMIT: "256Mi",
      JOB_CPU_REQUEST: "10m",
      JOB_MEMORY_REQUEST: "16Mi",
      RETRY_BASE_MS: "200",
      RETRY_MAX_SECONDS: "3",
    },
  });
});
after(async () => {
  if (OUT && rows.length) writeFileSync(OUT, table());
  if (p && rows.some((r) => !clean(r))) keepLogs(p.stack.dir);
  await p?.stop();
});

/** The stack's folder goes at the end: a row that was not clean keeps its processes' and pods' logs for reading. */
function keepLogs(dir: string): void {
  const dest = join(cacheDir(), "test-logs", `resilience-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  cpSync(dir, dest, { recursive: true, filter: (src) => !/\/(etcd|jetstream|s3-data|pki)(\/|$)/.test(src.slice(dir.length)) });
  console.log(`# a row was not clean: the logs of every process and pod are kept in ${dest}`);
}

// ── what a scenario does and what it is measured by ──────────────────────────────────────────

interface Row {
  scenario: string;
  fault: string;
  sent: number;
  replies: number;
  duplicates: number;
  lost: number;
  objects: number;
  jobs: number;
  secrets: number;
  seconds: number;
}
const rows: Row[] = [];

let users = 0;
/** A message from a new user (no rate limit, no cache hit): `first` is the first line of the stand-in's input. */
async function send(tag: string, first = ""): Promise<{ id: string; body: string; accepted: boolean }> {
  const n = String(++users).padStart(4, "0");
  const content = Buffer.from(`${first ? `${first}\n` : ""}resilience ${tag} ${n} ${Date.now()}`);
  const r = await p.sim.sendUserMessage({
    type: "audio",
    bytes: content,
    mimeType: "audio/ogg; codecs=opus",
    voice: true,
    from: { waId: `4915550${n}1`, name: `Fault ${n}` },
  });
  return { id: r.id, body: r.body, accepted: r.deliveries.every((d) => d.status === 200) };
}

/** As Meta does: delivers the webhook again until it is answered 200. */
async function redeliver(body: string, timeoutMs = 90_000): Promise<void> {
  await until(
    "the webhook to take a redelivery",
    async () => ((await p.sim.deliverRaw(body)).every((d) => d.status === 200) ? true : undefined),
    timeoutMs,
    1000,
  );
}

const repliesTo = (id: string): SentMessage[] => p.sim.sentMessages().filter((m) => m.type !== "reaction" && m.replyTo === id);

async function jobOf(id: string) {
  return p.sjs.get(separationJobName(id));
}

/** Until the SeparationJob of a message has a Job (the flow is in the middle). */
const jobStarted = (id: string) =>
  until(`a Job for ${id}`, async () =>
    (await p.batch.listNamespacedJob({ namespace: p.namespace })).items.some((j) => j.metadata?.name === separationJobName(id)) ? true : undefined,
  );

/** Until its pod runs. */
const podRunning = (id: string) =>
  until(`the pod of ${id} to run`, async () => {
    const pods = await p.core.listNamespacedPod({ namespace: p.namespace, labelSelector: `unmix.dev/separationjob=${separationJobName(id)}` });
    return pods.items.some((x) => x.status?.phase === "Running") ? true : undefined;
  });

async function settled(id: string): Promise<boolean> {
  if (repliesTo(id).length === 0) return false;
  const sj = await jobOf(id);
  const s = findCondition(sj?.status?.conditions, "Succeeded")?.status;
  return !sj || s === "True" || s === "False";
}

async function leftovers(): Promise<{ objects: number; jobs: number; secrets: number }> {
  let objects = 0;
  for (const prefix of ["inputs/", "work/"]) for await (const _ of p.store.list(prefix)) objects++;
  const jobs = (await p.batch.listNamespacedJob({ namespace: p.namespace })).items.length;
  const secrets = (await p.core.listNamespacedSecret({ namespace: p.namespace })).items.length;
  return { objects, jobs, secrets };
}

/** Runs a scenario, waits for every message to settle, counts, and records the row. */
async function measure(scenario: string, fault: string, run: () => Promise<string[]>, timeoutMs = 180_000): Promise<Row> {
  const started = Date.now();
  const ids = await run();
  await until(
    `every message of "${scenario}" to end in a reply`,
    async () => ((await Promise.all(ids.map(settled))).every(Boolean) ? true : undefined),
    timeoutMs,
    250,
  ).catch(
    () => undefined, // counted as lost below
  );
  // long enough for a wrong second send to show: the receipt window and a retry
  await sleep((CONFIRM_S + 2) * 1000);
  // finished Jobs go after their TTL (1 s here); anything else left is a leftover
  const left = await until(
    "leftovers to clear",
    async () => {
      const l = await leftovers();
      return l.objects + l.jobs + l.secrets === 0 ? l : undefined;
    },
    30_000,
  ).catch(() => leftovers());
  const counts = ids.map((id) => repliesTo(id).length);
  const row: Row = {
    scenario,
    fault,
    sent: ids.length,
    replies: counts.reduce((a, b) => a + b, 0),
    duplicates: counts.reduce((a, n) => a + Math.max(0, n - 1), 0),
    lost: counts.filter((n) => n === 0).length,
    ...left,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  rows.push(row);
  for (const [i, id] of ids.entries()) if (counts[i] === 0) console.log(`# no reply: ${await whereItStands(id)}`);
  return row;
}

/** Where an unanswered message stands: its SeparationJob's conditions, its Job's, its pods' and their containers' states. */
async function whereItStands(id: string): Promise<string> {
  const name = separationJobName(id);
  const sj = await jobOf(id);
  const conditions = sj?.status?.conditions?.map((c) => `${c.type}=${c.status}${c.reason ? `(${c.reason})` : ""}`).join(" ");
  const job = (await p.batch.listNamespacedJob({ namespace: p.namespace })).items.find((j) => j.metadata?.name === name);
  const pods = await p.core.listNamespacedPod({ namespace: p.namespace, labelSelector: `unmix.dev/separationjob=${name}` });
  return JSON.stringify({
    separationJob: name,
    conditions: conditions ?? "gone",
    job: job ? { status: job.status, finalizers: job.metadata?.finalizers } : "gone",
    pods: pods.items.map((x) => ({
      name: x.metadata?.name,
      phase: x.status?.phase,
      containers: x.status?.containerStatuses?.map((c) => c.state),
      finalizers: x.metadata?.finalizers,
      deleting: !!x.metadata?.deletionTimestamp,
    })),
  });
}

const clean = (r: Row) => r.duplicates + r.lost + r.objects + r.jobs + r.secrets === 0 && r.replies === r.sent;

function expectClean(row: Row): void {
  assert.deepEqual(
    { duplicates: row.duplicates, lost: row.lost, objects: row.objects, jobs: row.jobs, secrets: row.secrets },
    { duplicates: 0, lost: 0, objects: 0, jobs: 0, secrets: 0 },
    `${row.scenario}: ${JSON.stringify(row)}`,
  );
  assert.equal(row.replies, row.sent);
}

function table(): string {
  const head = "| scenario | fault injected mid-flow | messages | replies | duplicates | lost | objects left | Jobs left | Secrets left | seconds |";
  const lines = rows.map(
    (r) => `| ${r.scenario} | ${r.fault} | ${r.sent} | ${r.replies} | ${r.duplicates} | ${r.lost} | ${r.objects} | ${r.jobs} | ${r.secrets} | ${r.seconds} |`,
  );
  return [
    "# Resilience: the fault matrix",
    "",
    "Written by `e2e/test/resilience.test.ts`; regenerate with `make resilience` (every scenario,",
    "UNMIX_RESILIENCE=all). `make test` runs the rows marked quick there. The whole product runs on the",
    "real local stack (webhook and worker as separate processes, controller, NATS JetStream, MinIO,",
    "kube-apiserver with the Job controller, the node agent), the job pod is the stand-in",
    "(controller/test/standin-job.sh). Each message must end in exactly one reply (the result, or the",
    "failure notice when the fault is WhatsApp refusing the result), with nothing left under",
    "`inputs/` and `work/`, no Job and no Secret. Replies are counted at the WhatsApp simulator;",
    `a row is counted ${CONFIRM_S + 2} s after its last reply (REPLY_CONFIRM_SECONDS=${CONFIRM_S}, Graph timeout ${GRAPH_TIMEOUT_S} s),`,
    "so a wrong second send would show.",
    "",
    `Run: ${new Date().toISOString().slice(0, 16)}Z, ${rows.length} scenarios.`,
    "",
    head,
    "|---|---|---|---|---|---|---|---|---|---|",
    ...lines,
    "",
  ].join("\n");
}

/** A quick row runs in `make test`; the rest only in `make resilience`. */
const scenario = (name: string, quick: boolean, fn: () => Promise<void>) =>
  test(`P11: ${name}: one reply each, nothing left`, { skip: !FULL && !quick ? "make resilience only" : false }, fn);

// ── the scenarios ───────────────────────────────────────────────────────────────────────────

describe("processes killed mid-flow", () => {
  scenario("webhook SIGKILL", true, async () => {
    const row = await measure(
      "webhook SIGKILL",
      "webhook killed right after accepting a message; a second arrives while it is down (Meta redelivers)",
      async () => {
        const a = await send("webhook-a", "SLEEP=2");
        assert.ok(a.accepted);
        await p.kill("ingress");
        const b = await send("webhook-b");
        assert.equal(b.accepted, false, "nobody answers while the webhook is down");
        await p.start("ingress");
        await redeliver(b.body);
        return [a.id, b.id];
      },
    );
    expectClean(row);
  });

  scenario("worker SIGKILL", true, async () => {
    const row = await measure(
      "worker SIGKILL",
      "worker killed while handling a message (after it marked it read); JetStream redelivers after the ack wait",
      async () => {
        const a = await send("worker-a");
        await until("the worker to start on the message", () => (p.sim.markedRead().some((r) => r.messageId === a.id) ? true : undefined), 30_000, 20);
        await p.kill("worker");
        const b = await send("worker-b");
        await p.start("worker");
        return [a.id, b.id];
      },
    );
    expectClean(row);
  });

  for (const fp of FAILPOINTS) {
    const quick = fp === "reply:sent" || fp === "reply:sending";
    scenario(`controller SIGKILL at ${fp}`, quick, async () => {
      const content = fp === "failure:recorded" ? "EXIT=10" : "";
      const row = await measure(`controller SIGKILL at ${fp}`, `controller killed at failpoint ${fp}, then started again`, async () => {
        await p.restart("controller", { kill: true, env: { UNMIX_FAILPOINTS: fp } });
        const dying = p.controller.proc;
        const a = await send(`controller-${fp}`, content);
        const how = await Promise.race([dying.exited, sleep(90_000, "still running")]);
        assert.equal(how, "SIGKILL", `the controller reached ${fp}`);
        await p.restart("controller", { env: { UNMIX_FAILPOINTS: "" } });
        return [a.id];
      });
      expectClean(row);
    });
  }

  scenario("NATS SIGKILL", true, async () => {
    const row = await measure(
      "NATS SIGKILL",
      "NATS killed with one message in the pipeline; another arrives while it is down (503, Meta redelivers)",
      async () => {
        const nats = p.stack.nats as NonNullable<Product["stack"]["nats"]>;
        const a = await send("nats-a", "SLEEP=2");
        await nats.crash();
        const b = await send("nats-b");
        assert.equal(b.accepted, false, "the webhook answers 503 without NATS");
        await nats.start();
        await redeliver(b.body);
        return [a.id, b.id];
      },
    );
    expectClean(row);
  });

  scenario("S3 SIGKILL", true, async () => {
    const row = await measure("S3 SIGKILL", "MinIO killed while the job runs, started 3 s later", async () => {
      const s3 = p.stack.s3 as NonNullable<Product["stack"]["s3"]>;
      const a = await send("s3-a", "SLEEP=2");
      await jobStarted(a.id);
      await s3.crash();
      const b = await send("s3-b");
      await sleep(3000);
      await s3.start();
      return [a.id, b.id];
    });
    expectClean(row);
  });

  scenario("API server SIGKILL", true, async () => {
    const row = await measure(
      "API server SIGKILL",
      "kube-apiserver killed (SIGKILL) and started again while a job runs and another message arrives",
      async () => {
        const a = await send("apiserver-a", "SLEEP=3");
        await jobStarted(a.id);
        const restarting = p.stack.kube?.crashApiServer();
        const b = await send("apiserver-b");
        await restarting;
        return [a.id, b.id];
      },
    );
    expectClean(row);
  });

  scenario("node agent crash", true, async () => {
    const row = await measure(
      "node agent crash",
      "the node agent stopped with its pods' processes (a node crash) while a pod runs, started again",
      async () => {
        const node = p.stack.kube?.node as NonNullable<Product["stack"]["kube"]>["node"];
        const a = await send("node-a", "SLEEP=3");
        await podRunning(a.id);
        await node.stop();
        await sleep(1000);
        await node.start();
        return [a.id];
      },
    );
    expectClean(row);
  });
});

describe("the Graph API failing mid-flow", () => {
  /** Arms a fault on a route once a message's Job exists (the worker's own calls are done by then). */
  async function graphFault(tag: string, arm: () => void): Promise<string[]> {
    const a = await send(tag, "SLEEP=1");
    await jobStarted(a.id);
    arm();
    return [a.id];
  }

  /** The scenario, and proof that the fault fired: the controller counted `times` failed calls of that kind. */
  async function withGraphErrors(kind: string, times: number, run: () => Promise<Row>): Promise<Row> {
    const before = await graphErrors(kind);
    const row = await run();
    assert.equal((await graphErrors(kind)) - before, times, `failed Graph calls of kind ${kind}`);
    return row;
  }

  scenario("Graph 5xx on the reply", true, async () => {
    const row = await withGraphErrors("temporary", 2, () =>
      measure("Graph 5xx on the reply", "two 503 (133004) answers to the send", () =>
        graphFault("g5xx", () => p.sim.failNext("messages", "temporarily-unavailable", 2)),
      ),
    );
    expectClean(row);
  });

  scenario("Graph timeout on the reply", true, async () => {
    let id = "";
    const row = await withGraphErrors("temporary", 1, () =>
      measure(
        "Graph timeout on the reply",
        `the send answered after the controller's ${GRAPH_TIMEOUT_S} s timeout (WhatsApp did send it): settled by its status webhook`,
        async () => {
          const ids = await graphFault("gtimeout", () => p.sim.delayNext("messages", (GRAPH_TIMEOUT_S + 1) * 1000, 1));
          id = ids[0] as string;
          return ids;
        },
      ),
    );
    expectClean(row);
    const replied = findCondition((await jobOf(id))?.status?.conditions, "Replied");
    assert.match(replied?.message ?? "", /status webhook/, "the unknown outcome was settled by the receipt, not by a second send");
  });

  scenario("130429 on the reply", false, async () => {
    const row = await withGraphErrors("rate-limit", 2, () =>
      measure("130429 on the reply", "two rate-limit (130429) answers to the send", () =>
        graphFault("g130429", () => p.sim.failNext("messages", "rate-limit", 2)),
      ),
    );
    expectClean(row);
  });

  scenario("131056 on the reply", false, async () => {
    const row = await withGraphErrors("pair-rate-limit", 2, () =>
      measure("131056 on the reply", "two pair-rate-limit (131056) answers to the send", () =>
        graphFault("g131056", () => p.sim.failNext("messages", "pair-rate-limit", 2)),
      ),
    );
    expectClean(row);
  });

  scenario("expired token on the reply", false, async () => {
    const sendTimes = () => p.sim.requests.filter((r) => r.method === "POST" && r.path.endsWith("/messages")).map((r) => r.time);
    let first = 0;
    const row = await withGraphErrors("auth", 2, () =>
      measure(
        "expired token on the reply",
        "the send refused twice with 190/463 (token expired): counted for the alert, then tried again 30 s later, not in a storm",
        () =>
          graphFault("gtoken", () => {
            first = sendTimes().length;
            p.sim.failNext("messages", "token-expired", 2);
          }),
      ),
    );
    expectClean(row);
    // the two refused sends, the one that went through, the ✅ reaction
    const times = sendTimes().slice(first);
    assert.equal(times.length, 4, `Graph sends during the fault: ${times.length}`);
    assert.ok((times[2] as number) - (times[1] as number) >= 25_000, "after the second refusal the send waits ~30 s");
    const alerts = readFileSync(p.controller.proc.logFile, "utf8")
      .split("\n")
      .filter((l) => l.includes('"level":50') && l.includes("the access token was refused"));
    assert.equal(alerts.length, 2, "one error line per refused call");
  });

  scenario("expired media URL", false, async () => {
    const row = await measure("expired media URL", "the media download answered 404 (URL expired): a new URL is fetched", async () => {
      const downloads = () => p.sim.requests.filter((r) => r.path.startsWith("/whatsapp_business/attachments/")).length;
      const before = downloads();
      p.sim.failNext("media-download", { httpStatus: 404 }, 1);
      const a = await send("gurl");
      await until("the second download", () => (downloads() - before >= 2 ? true : undefined));
      return [a.id];
    });
    expectClean(row);
  });

  scenario("131053 on the upload", true, async () => {
    const row = await withGraphErrors("media-rejected", 1, () =>
      measure("131053 on the upload", "WhatsApp refuses the result's upload (131053): the user gets the failure notice", () =>
        graphFault("g131053", () => p.sim.failNext("media-upload", "media-rejected", 1)),
      ),
    );
    expectClean(row);
  });
});

/** The controller's failed Graph calls of a kind (unmix_whatsapp_api_errors_total, which the token alert reads). */
async function graphErrors(kind: string): Promise<number> {
  const text = await (await fetch(`${p.controller.url}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("unmix_whatsapp_api_errors_total{") && l.includes(`kind="${kind}"`))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}
