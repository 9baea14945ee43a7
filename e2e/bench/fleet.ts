// The fleet benchmark: the controller against a simulated GPU fleet (KWOK: e2e/src/stack/kwok.ts) on
// the real API server, scheduler and Job controller, MinIO and the WhatsApp simulator.
//
//   node e2e/bench/fleet.ts burst [N=10000] [nodes=100] [runSeconds=5]
//     N users send a voice note each; N SeparationJobs are created in a burst. Reports the time until
//     all have replied, the peaks waiting, API requests per SeparationJob (the API server's
//     apiserver_request_total), the controller's CPU seconds and peak RSS (the chart's heap limit,
//     tracing on), the scheduler's and Job controller's throughput, and replies lost or doubled.
//   node e2e/bench/fleet.ts fairness [heavy=200] [others=50] [nodes=1] [runSeconds=10]
//     One user sends `heavy` files at once, then `others` users one each, on nodes × 8 GPUs: the
//     others' time to reply without the per-sender limit and with it (2), side by side.
//
// The SeparationJobs are created as the ingress's worker would create them (SeparationJob + sender
// Secret, the media in the simulator), not through webhooks: the webhook path has its own benchmark
// (make bench-webhook), and here it would only share the two cores with what is measured. Nothing
// runs in a KWOK pod, so the result and manifest the job would write are put in the object store
// before the burst (the controller reads them once the Job is Complete, as for a real job).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findCondition } from "@unmix/api/conditions";
import { standInJobOutput } from "@unmix/controller/bench/stand-in-job.ts";
import { manifestKey, outputKey } from "@unmix/controller/src/separation/job-spec.ts";
import { type ChildController, type Harness, spawnController, startHarness, until, watchJobConcurrency } from "@unmix/controller/test/harness.ts";
import { startOtlpReceiver } from "../src/otlp-receiver.ts";
import { type Fleet, startFleet } from "../src/stack/kwok.ts";
import { freePort } from "../src/stack/ports.ts";

const [mode = "burst", ...rest] = process.argv.slice(2);
const arg = (i: number, def: number) => Number(rest[i] ?? def);
const GPUS_PER_NODE = 8;
const CREATE_PARALLELISM = 50;
const log = (...a: unknown[]) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

// the chart's defaults for the controller and its Jobs (charts/unmix/values.yaml, controller/Dockerfile)
const CHART_NODE_OPTIONS = "--max-semi-space-size=1 --max-old-space-size=128";
const CHART_MEMORY_LIMIT_MB = 320;
const GPU_POOL = { "nvidia.com/gpu.present": "true" };
const CHART_JOB = {
  JOB_TOLERATIONS: JSON.stringify([{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]),
  JOB_NODE_SELECTOR: JSON.stringify(GPU_POOL),
  JOB_CPU_REQUEST: "2",
  JOB_CPU_LIMIT: "4",
  JOB_MEMORY_REQUEST: "6Gi",
  JOB_MEMORY_LIMIT: "12Gi",
  JOB_BACKOFF_LIMIT: "2",
  RETRY_BASE_MS: "500",
  RETRY_MAX_SECONDS: "300",
  REPLY_CONFIRM_SECONDS: "300",
  RECONCILE_CONCURRENCY: "8",
  PER_USER_MAX_ACTIVE_JOBS: "2",
  LEADER_ELECT: "true",
  LOG_LEVEL: "warn",
};

type Message = Awaited<ReturnType<Harness["userMessage"]>>;

/** HTTPS GET of a control-plane /metrics (self-signed; the API server's with the admin token). */
function scrape(url: string, token?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { rejectUnauthorized: false, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Sum of every sample of a metric whose labels match `filter` (a substring of the label set). */
function sum(text: string, name: string, filter = ""): number {
  let total = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)`, "gm"))) if ((m[1] ?? "").includes(filter)) total += Number(m[2]);
  return total;
}

/** API requests by "verb resource", from apiserver_request_total. */
function requestsByKind(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^apiserver_request_total\{([^}]*)\} (\S+)/gm)) {
    const labels = Object.fromEntries([...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ""}`;
    out.set(key, (out.get(key) ?? 0) + Number(m[2]));
  }
  return out;
}

const cpuSeconds = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
};
const statusKb = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? Number.NaN;
};
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** A message per sender, its result pre-seeded where the job would have written it. */
async function prepare(h: Harness, senders: string[], output: { ogg: Buffer; manifest: Buffer }): Promise<Message[]> {
  const out: Message[] = [];
  for (let i = 0; i < senders.length; i += CREATE_PARALLELISM) {
    const batch = await Promise.all(
      senders.slice(i, i + CREATE_PARALLELISM).map(async (from, j) => {
        const m = await h.userMessage({ content: `fleet ${i + j}`, from });
        await h.store.put(outputKey(m.name), output.ogg, output.ogg.length, "audio/ogg");
        await h.store.put(manifestKey(m.name), output.manifest, output.manifest.length, "application/json");
        return m;
      }),
    );
    out.push(...batch);
  }
  return out;
}

async function startLeader(h: Harness, ns: string, env: Record<string, string>): Promise<{ c: ChildController; metricsUrl: string }> {
  const port = await freePort();
  const c = spawnController(h, h.env(ns, { ...CHART_JOB, HTTP_PORT: String(port), NODE_OPTIONS: CHART_NODE_OPTIONS, ...env }));
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  await until(
    "the controller to lead with full caches",
    async () =>
      (
        await fetch(metricsUrl).then(
          (r) => r.text(),
          () => "",
        )
      ).includes("unmix_controller_is_leader 1")
        ? true
        : undefined,
    120_000,
  );
  return { c, metricsUrl };
}

async function createAll(h: Harness, ns: string, messages: Message[]): Promise<Map<string, number>> {
  const createdAt = new Map<string, number>();
  const sjs = h.sjs(ns);
  for (let i = 0; i < messages.length; i += CREATE_PARALLELISM)
    await Promise.all(
      messages.slice(i, i + CREATE_PARALLELISM).map(async (m) => {
        await sjs.create(m.job);
        createdAt.set(m.wamid, Date.now());
      }),
    );
  return createdAt;
}

/** The first reply's time per message (ms since epoch), from the simulator's log of sent messages. */
function replyTimes(h: Harness, messages: Message[]): { first: Map<string, number>; lost: number; doubled: number } {
  // indexed once per call: repliesTo() per message would scan the whole log N times
  const byMessage = new Map<string, number[]>();
  for (const r of h.sim.sentMessages()) {
    if (r.type === "reaction" || !r.replyTo) continue;
    const times = byMessage.get(r.replyTo) ?? [];
    times.push(r.time);
    byMessage.set(r.replyTo, times);
  }
  const first = new Map<string, number>();
  let lost = 0;
  let doubled = 0;
  for (const m of messages) {
    const times = byMessage.get(m.wamid) ?? [];
    if (times.length === 0) lost++;
    if (times.length > 1) doubled++;
    if (times.length) first.set(m.wamid, Math.min(...times));
  }
  return { first, lost, doubled };
}

async function leftInStore(h: Harness): Promise<number> {
  let n = 0;
  for (const prefix of ["inputs/", "work/"]) for await (const _ of h.store.list(prefix)) n++;
  return n;
}

function table(rows: [string, string][]): void {
  const width = Math.max(...rows.map((r) => r[0].length));
  console.log(`\n| ${"measure".padEnd(width)} | value |\n|${"-".repeat(width + 2)}|-------|`);
  for (const [k, v] of rows) console.log(`| ${k.padEnd(width)} | ${v} |`);
}

async function burst(h: Harness, fleet: Fleet, n: number, runSeconds: number): Promise<void> {
  const cp = h.stack.kube as NonNullable<Harness["stack"]["kube"]>;
  const ns = await h.namespace();
  const otlp = await startOtlpReceiver();
  const senders = Array.from({ length: n }, (_, i) => `49160${String(i).padStart(8, "0")}`);
  log(`${n} users send a voice note (media in the simulator, results pre-seeded in MinIO)`);
  const messages = await prepare(h, senders, output);
  const { c, metricsUrl } = await startLeader(h, ns, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" });
  const pid = c.proc.pid as number;
  const idleRss = statusKb(pid, "VmRSS");
  const cpu0 = cpuSeconds(pid);
  const [api0, kcm0, sched0, own0] = await Promise.all([
    scrape(`${cp.server}/metrics`, cp.token),
    scrape(cp.metricsUrls.controllerManager),
    scrape(cp.metricsUrls.scheduler),
    fetch(metricsUrl).then((r) => r.text()),
  ]);

  log(`creating ${n} SeparationJobs at once`);
  const t0 = Date.now();
  const creating = createAll(h, ns, messages);
  let peakGpuWait = 0;
  let peakPending = 0;
  let peakScheduled = 0;
  let peakFinished = 0;
  let lastSched = sum(sched0, "scheduler_schedule_attempts_total", 'result="scheduled"');
  let lastJobs = sum(kcm0, "job_controller_jobs_finished_total");
  let lastT = t0;
  let createdIn = 0;
  void creating.then(() => {
    createdIn = Date.now() - t0;
    log(`created in ${sec(createdIn)}`);
  });
  const deadline = t0 + 3 * 3600_000;
  let replied = 0;
  while (replied < n) {
    await sleep(2000);
    const [own, sched, kcm] = await Promise.all([
      fetch(metricsUrl).then((r) => r.text()),
      scrape(cp.metricsUrls.scheduler),
      scrape(cp.metricsUrls.controllerManager),
    ]);
    const now = Date.now();
    const s = sum(sched, "scheduler_schedule_attempts_total", 'result="scheduled"');
    const j = sum(kcm, "job_controller_jobs_finished_total");
    peakScheduled = Math.max(peakScheduled, (s - lastSched) / ((now - lastT) / 1000));
    peakFinished = Math.max(peakFinished, (j - lastJobs) / ((now - lastT) / 1000));
    [lastSched, lastJobs, lastT] = [s, j, now];
    const waiting = sum(own, "unmix_controller_separationjobs_waiting_for_gpu");
    peakGpuWait = Math.max(peakGpuWait, waiting);
    const pending = sum(sched, "scheduler_pending_pods");
    peakPending = Math.max(peakPending, pending);
    const before = replied;
    replied = replyTimes(h, messages).first.size;
    if (replied !== before)
      log(
        `${replied}/${n} replied; queue ${sum(own, "unmix_controller_workqueue_depth")}, waiting for a GPU ${waiting}, pods pending ${pending}, RSS ${(statusKb(pid, "VmRSS") / 1024).toFixed(0)} MB`,
      );
    if (now > deadline) throw new Error(`only ${replied}/${n} replied within 3 hours`);
  }
  const allReplied = Date.now() - t0;
  await creating;
  // every SeparationJob finished (Finalize follows the reply), then the counters
  await until(
    "every SeparationJob finished",
    async () => {
      const items = (await h.sjs(ns).list()).items;
      return items.filter((s) => ["True", "False"].includes(findCondition(s.status?.conditions, "Succeeded")?.status ?? "")).length === n ? items : undefined;
    },
    30 * 60_000,
    5000,
  );
  const finished = Date.now() - t0;
  const cpu = cpuSeconds(pid) - cpu0;
  const hwm = statusKb(pid, "VmHWM");
  const [api1, kcm1, sched1, own1] = await Promise.all([
    scrape(`${cp.server}/metrics`, cp.token),
    scrape(cp.metricsUrls.controllerManager),
    scrape(cp.metricsUrls.scheduler),
    fetch(metricsUrl).then((r) => r.text()),
  ]);
  const items = (await h.sjs(ns).list()).items;
  const ok = items.filter((s) => findCondition(s.status?.conditions, "Succeeded")?.status === "True").length;
  const { first, lost, doubled } = replyTimes(h, messages);
  const created = await creating;
  const toReply = messages.map((m) => (first.get(m.wamid) ?? Number.NaN) - (created.get(m.wamid) ?? t0));
  const left = await leftInStore(h);

  const byKind0 = requestsByKind(api0);
  const byKind1 = requestsByKind(api1);
  const deltas = [...byKind1].map(([k, v]) => [k, v - (byKind0.get(k) ?? 0)] as const).filter(([, v]) => v > 0);
  const totalApi = deltas.reduce((a, [, v]) => a + v, 0);
  const ownRequests = sum(own1, "unmix_controller_kube_requests_total") - sum(own0, "unmix_controller_kube_requests_total");
  const scheduled =
    sum(sched1, "scheduler_schedule_attempts_total", 'result="scheduled"') - sum(sched0, "scheduler_schedule_attempts_total", 'result="scheduled"');
  const unschedulable =
    sum(sched1, "scheduler_schedule_attempts_total", 'result="unschedulable"') - sum(sched0, "scheduler_schedule_attempts_total", 'result="unschedulable"');
  const jobsDone = sum(kcm1, "job_controller_jobs_finished_total") - sum(kcm0, "job_controller_jobs_finished_total");
  const spans = otlp.spans.filter((x) => x.service === "unmix-controller").length;
  table([
    ["SeparationJobs (one sender each)", String(n)],
    ["fleet", `${fleet.nodeNames.length} KWOK nodes × ${GPUS_PER_NODE} nvidia.com/gpu, a pod runs ${runSeconds} s; the real node agent's node has none`],
    ["created in", sec(createdIn)],
    ["all replied after", sec(allReplied)],
    ["all finished (Succeeded) after", sec(finished)],
    ["succeeded", `${ok}/${n}`],
    ["replies lost / doubled", `${lost} / ${doubled}`],
    ["message-to-reply p50 / p95 / max", `${sec(pct(toReply, 0.5))} / ${sec(pct(toReply, 0.95))} / ${sec(Math.max(...toReply))}`],
    ["peak waiting for a GPU (controller gauge) / pods pending (scheduler)", `${peakGpuWait} / ${peakPending}`],
    [
      "API requests per SeparationJob (apiserver_request_total, all clients)",
      `${(totalApi / n).toFixed(1)}: ${deltas
        .sort((a, b) => b[1] - a[1])
        .filter(([, v]) => v / n >= 0.05)
        .map(([k, v]) => `${k} ${(v / n).toFixed(2)}`)
        .join(", ")} (the fleet's node leases included)`,
    ],
    ["of which the controller's", (ownRequests / n).toFixed(2)],
    ["controller CPU", `${cpu.toFixed(1)} s (${((cpu / (finished / 1000)) * 100).toFixed(0)} % of a core over the run)`],
    [
      "controller RSS idle → peak (VmHWM)",
      `${(idleRss / 1024).toFixed(0)} → ${(hwm / 1024).toFixed(0)} MB (chart limit ${CHART_MEMORY_LIMIT_MB} MiB; ${CHART_NODE_OPTIONS})`,
    ],
    ["tracing", `on: ${spans} controller spans exported`],
    [
      "scheduler: pods scheduled (avg / peak per 2 s)",
      `${scheduled} (${(scheduled / (finished / 1000)).toFixed(1)}/s / ${peakScheduled.toFixed(1)}/s), ${unschedulable} unschedulable attempts`,
    ],
    ["Job controller: Jobs finished (avg / peak per 2 s)", `${jobsDone} (${(jobsDone / (finished / 1000)).toFixed(1)}/s / ${peakFinished.toFixed(1)}/s)`],
    ["objects left under inputs/ and work/", String(left)],
  ]);
  assert.equal(lost, 0, "no message without a reply");
  assert.equal(doubled, 0, "no message with two replies");
  await c.kill("SIGTERM");
  await otlp.stop();
}

async function fairness(h: Harness, fleet: Fleet, heavy: number, others: number, runSeconds: number): Promise<void> {
  const rows: [string, string][] = [
    ["fleet", `${fleet.nodeNames.length} KWOK nodes × ${GPUS_PER_NODE} GPUs, a pod runs ${runSeconds} s`],
    ["messages", `one user sends ${heavy} at once, then ${others} users send 1 each`],
  ];
  const results: Record<string, string>[] = [];
  for (const limit of [0, 2]) {
    const ns = await h.namespace();
    const heavyUser = `4917${limit}00000000`;
    const senders = [
      ...Array.from({ length: heavy }, () => heavyUser),
      ...Array.from({ length: others }, (_, i) => `4918${limit}${String(i).padStart(8, "0")}`),
    ];
    log(`PER_USER_MAX_ACTIVE_JOBS=${limit}: preparing ${senders.length} messages`);
    const messages = await prepare(h, senders, output);
    const heavyNames = new Set(messages.slice(0, heavy).map((m) => m.name));
    const { c } = await startLeader(h, ns, { PER_USER_MAX_ACTIVE_JOBS: String(limit) });
    const jobs = await watchJobConcurrency(h, ns, (name) => (heavyNames.has(name) ? "heavy" : "others"));
    const t0 = Date.now();
    const created = await createAll(h, ns, messages);
    // with the limit, the burst drains at `limit` Jobs at a time: the phase ends when the others are
    // answered (the burst's progress is reported); without it, when everything is
    const awaited = limit > 0 ? messages.slice(heavy) : messages;
    await until(
      limit > 0 ? "the other users' messages replied" : "every message replied",
      async () => (replyTimes(h, awaited).first.size === awaited.length ? true : undefined),
      60 * 60_000,
      1000,
    );
    const { first, doubled } = replyTimes(h, messages);
    const { lost } = replyTimes(h, awaited);
    const wait = (ms: Message[]) => ms.map((m) => (first.get(m.wamid) ?? Number.NaN) - (created.get(m.wamid) ?? t0));
    const o = wait(messages.slice(heavy));
    const hv = wait(messages.slice(0, heavy));
    results.push({
      "others' time to reply p50 / p95 / max": `${sec(pct(o, 0.5))} / ${sec(pct(o, 0.95))} / ${sec(Math.max(...o))}`,
      "the heavy user's files replied by then (latest)": `${hv.filter(Number.isFinite).length}/${heavy} (${sec(Math.max(...hv.filter(Number.isFinite)))})`,
      "phase ended after": sec(Date.now() - t0),
      "the heavy user's most Jobs at once (a Job watch)": String(jobs.most("heavy")),
      "replies lost (of those awaited) / doubled": `${lost} / ${doubled}`,
    });
    jobs.stop();
    assert.equal(lost + doubled, 0, "exactly one reply each");
    await c.kill("SIGTERM");
  }
  const keys = Object.keys(results[0] ?? {});
  for (const k of keys) rows.push([k, `no limit: ${results[0]?.[k]} · limit 2: ${results[1]?.[k]}`]);
  table(rows);
}

const dir = standInJobOutput({ prefix: "unmix-fleet-", sizeBytes: 2064, fill: 1, mediaSeconds: 4, separateSeconds: 5 });
const output = { ogg: readFileSync(join(dir, "output.ogg")), manifest: readFileSync(join(dir, "manifest.json")) };

const isBurst = mode === "burst";
if (!isBurst && mode !== "fairness") throw new Error(`unknown mode ${mode}: burst or fairness`);
const nodes = isBurst ? arg(1, 100) : arg(2, 1);
const runSeconds = isBurst ? arg(2, 5) : arg(3, 10);
log(`starting the stack and a fleet of ${nodes} KWOK nodes`);
// the real node agent's node has no GPU: every separation Job lands on the fleet
const h = await startHarness({ gpus: 0 });
let exitCode = 0;
try {
  const cp = h.stack.kube as NonNullable<Harness["stack"]["kube"]>;
  const fleet = await startFleet(
    {
      nodes,
      gpusPerNode: GPUS_PER_NODE,
      runMs: runSeconds * 1000,
      runJitterMs: 1000,
      labels: GPU_POOL,
      taints: [{ key: "nvidia.com/gpu", value: "present", effect: "NoSchedule" }],
    },
    cp,
    h.core,
    h.stack.dir,
  );
  if (isBurst) await burst(h, fleet, arg(0, 10_000), runSeconds);
  else await fairness(h, fleet, arg(0, 200), arg(1, 50), runSeconds);
  await fleet.stop();
} catch (err) {
  console.error(err);
  exitCode = 1;
} finally {
  await h.stop();
}
process.exit(exitCode);
