// The journey benchmark: webhook-to-reply time on the local stack for 10 s and 60 s voice notes and
// a 30 s video, broken down by step, printed as a table (median and p95 per step).
//
//   node e2e/bench/journey.ts [runs per case, default 3]
//
// Where each boundary comes from: the webhook POST (the simulator sends it), the SeparationJob and
// its pod as first seen by a 25 ms poller (pod timestamps in the API have only second precision),
// the SeparationJob's status.steps (fetchedAt, separatedAt: milliseconds, written by the
// controller), the job's own step timings ("step X took Y s" lines of the pod log, the same numbers
// as the manifest's stepSeconds), and the reply as the simulator received it.
// Target: everything except separation and encoding under 1.5 s at p95.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { separationJobName } from "@unmix/api/separationjob";
import { type Product, startProduct } from "../src/product.ts";
import { type MediaKind, makeMedia } from "../src/test-media.ts";

const RUNS = Number(process.argv[2] ?? 3);
const CASES: { name: string; kind: MediaKind; seconds: number }[] = [
  { name: "voice note 10 s", kind: "voice", seconds: 10 },
  { name: "voice note 60 s", kind: "voice", seconds: 60 },
  { name: "video 30 s", kind: "mp4", seconds: 30 },
];
const STEPS = ["queue", "fetch", "schedule", "pod start", "prepare", "separate", "encode", "upload", "job→controller", "reply"] as const;
type Step = (typeof STEPS)[number];
const OVERHEAD: Step[] = STEPS.filter((s) => s !== "separate" && s !== "encode");

function jobSteps(p: Product, pod: string): Record<string, number> {
  const dir = readdirSync(p.podLogDir).find((d) => d.startsWith(`${p.namespace}_${pod}_`));
  if (!dir) throw new Error(`no log folder for pod ${pod}`);
  const out: Record<string, number> = {};
  for (const f of readdirSync(join(p.podLogDir, dir)).filter((x) => x.endsWith(".log")))
    for (const m of readFileSync(join(p.podLogDir, dir, f), "utf8").matchAll(/step (\w+) took ([\d.]+) s/g)) out[m[1] as string] = Number(m[2]);
  return out;
}

async function once(p: Product, kind: MediaKind, seconds: number, seed: number): Promise<Record<Step, number> & { total: number }> {
  const m = makeMedia(kind, seconds, seed);
  const seen: { sj?: number; bound?: number; podDone?: number; pod?: string } = {};
  let done = false;
  const t0 = Date.now();
  const sent = await p.sim.sendUserMessage({ type: m.type, bytes: m.bytes, mimeType: m.mimeType, ...(m.type === "audio" ? { voice: true } : {}) } as never);
  const name = separationJobName(sent.id);
  const poller = (async () => {
    while (!done) {
      const now = Date.now();
      if (!seen.sj && (await p.sjs.get(name))) seen.sj = now;
      if (seen.sj && !seen.podDone) {
        const pods = await p.core.listNamespacedPod({ namespace: p.namespace, labelSelector: `job-name=${name}` });
        const pod = pods.items[0];
        if (pod?.spec?.nodeName && !seen.bound) {
          seen.bound = now;
          seen.pod = pod.metadata?.name;
        }
        if (pod?.status?.phase === "Succeeded" || pod?.status?.phase === "Failed") seen.podDone = now;
      }
      await sleep(25);
    }
  })();
  const reply = await p.sim.waitForMessage((x) => x.replyTo === sent.id && x.type !== "reaction", 600_000);
  done = true;
  await poller;
  const sj = await p.sjs.get(name);
  const st = sj?.status?.steps ?? {};
  if (!seen.sj || !seen.bound || !seen.podDone || !seen.pod || !st.fetchedAt || !st.separatedAt)
    throw new Error(`incomplete observation: ${JSON.stringify({ seen, st })}`);
  const js = jobSteps(p, seen.pod);
  const inJob = Object.values(js).reduce((a, b) => a + b, 0) * 1000;
  const fetched = Date.parse(st.fetchedAt);
  const separated = Date.parse(st.separatedAt);
  const r: Record<Step, number> = {
    queue: seen.sj - t0,
    fetch: fetched - seen.sj,
    schedule: seen.bound - fetched,
    "pod start": seen.podDone - seen.bound - inJob,
    prepare: ((js.download ?? 0) + (js.probe ?? 0) + (js.decode ?? 0) + (js.loadModel ?? 0)) * 1000,
    separate: (js.separate ?? 0) * 1000,
    encode: (js.encode ?? 0) * 1000,
    upload: (js.upload ?? 0) * 1000,
    "job→controller": separated - seen.podDone,
    reply: reply.time - separated,
  };
  return { ...r, total: reply.time - t0 };
}

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number;
};
const fmt = (ms: number) => (ms / 1000).toFixed(2).padStart(7);

const p = await startProduct({ gpus: 1 });
try {
  process.stdout.write(`model: ${p.model.description}; CPU; ${RUNS} runs per case after one warm-up\n\n`);
  await once(p, "voice", 3, 999); // warm-up: first pod start, first upload paths
  const header = `| step (s, median / p95) | ${CASES.map((c) => c.name).join(" | ")} |`;
  const rows: string[] = [header, `|---|${CASES.map(() => "---").join("|")}|`];
  const results = [];
  for (const c of CASES) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(p, c.kind, c.seconds, 1000 + i));
    results.push(runs);
  }
  const cell = (xs: number[]) => `${fmt(pct(xs, 0.5))} / ${fmt(pct(xs, 0.95))}`;
  for (const s of STEPS) rows.push(`| ${s} | ${results.map((runs) => cell(runs.map((r) => r[s]))).join(" | ")} |`);
  rows.push(`| **all but separate+encode** | ${results.map((runs) => cell(runs.map((r) => OVERHEAD.reduce((a, s) => a + r[s], 0)))).join(" | ")} |`);
  rows.push(`| **webhook → reply** | ${results.map((runs) => cell(runs.map((r) => r.total))).join(" | ")} |`);
  process.stdout.write(`${rows.join("\n")}\n\ntarget: all but separate+encode under 1.50 s at p95\n`);
} finally {
  await p.stop();
}
