// Benchmark: the controller's memory under real sizes (`make bench-controller`). On the real local
// stack, FINISHED SeparationJobs already present (as a week of retention leaves them), tracing on
// (every reconcile traced, exported to a local OTLP receiver), the garbage collector running every
// few seconds, then MEDIA users each send a 16 MiB voice note at once: the controller fetches each
// from WhatsApp into the object store and, once the job wrote a 15 MiB result, uploads that to
// WhatsApp. Reports the controller's peak resident memory (VmHWM) against the chart's limit, and
// checks every message got exactly one reply.
//
// Each controller tree given runs in turn on the same stack and the same SeparationJobs (the first
// hands its lease back on SIGTERM), so a before/after comparison is one run:
//   node controller/bench/memory.ts [FINISHED=50000] [MEDIA=8] [controller-tree…]
// A tree is a checkout's root (e.g. `git worktree add /tmp/before main`, with node_modules linked);
// the default is this one.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findCondition } from "@unmix/api/conditions";
import { API_VERSION, GROUP, KIND, PLURAL, separationJobName, USER_LABEL, VERSION } from "@unmix/api/separationjob";
import { startOtlpReceiver } from "@unmix/e2e/otlp-receiver";
import { freePort } from "@unmix/e2e/stack/ports";
import { parse } from "yaml";
import { createKubeClient } from "../src/framework/kube/client.ts";
import { kubeconfigConnection } from "../src/framework/kube/connection.ts";
import { ROOT, repliesTo, startHarness, until } from "../test/harness.ts";
import { standInJobOutput } from "./stand-in-job.ts";

const FINISHED = Number(process.argv[2] ?? 50_000);
const MEDIA = Number(process.argv[3] ?? 8);
const TREES = process.argv.slice(4).map((t) => resolve(t));
if (!TREES.length) TREES.push(ROOT);
const MiB = 1024 * 1024;
const PARALLEL = 128;
const NODE_OPTIONS = process.env.BENCH_NODE_OPTIONS ?? "--max-semi-space-size=1 --max-old-space-size=128";

const log = (...a: unknown[]) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const kb = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
const mb = (kib: number) => Math.round(kib / 1024);

// the chart's memory limit of the controller container
const values = parse(readFileSync(join(ROOT, "charts/unmix/values.yaml"), "utf8"));
const limit: string = values.controller.resources.limits.memory;
const limitMiB = Number(/^(\d+)Mi$/.exec(limit)?.[1]);
assert.ok(limitMiB > 0, `the chart's controller memory limit (${limit}) in Mi`);

// what the job writes: a 15 MiB result (under WhatsApp's 16 MB) and its manifest
const dir = standInJobOutput({ prefix: "unmix-bench-memory-", sizeBytes: 15 * MiB, fill: 3, mediaSeconds: 900, separateSeconds: 1 });

log(`starting the stack (${MEDIA} GPUs)`);
const h = await startHarness({
  gpus: MEDIA,
  images: { "unmix/job-bench": { entrypoint: ["/bin/sh", join(ROOT, "controller/bench/bench-job.sh")], env: { BENCH_DIR: dir } } },
});
const otlp = await startOtlpReceiver();
let exitCode = 0;
try {
  const ns = await h.namespace();
  // the controller's own client: keep-alive connections (client-node pays a TLS handshake a request)
  const kube = createKubeClient(await kubeconfigConnection(h.env(ns).KUBECONFIG as string));
  const collection = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;

  log(`creating ${FINISHED} finished SeparationJobs`);
  const createStarted = Date.now();
  const template = (await h.userMessage({ content: "a finished one" })).job;
  const at = new Date().toISOString();
  const succeeded = { type: "Succeeded", status: "True", reason: "Succeeded", message: "the user has the result", lastTransitionTime: at };
  for (let i = 0; i < FINISHED; i += PARALLEL) {
    await Promise.all(
      Array.from({ length: Math.min(PARALLEL, FINISHED - i) }, async (_, j) => {
        const n = i + j;
        const spec = { ...template.spec, message: { ...template.spec.message, id: `wamid.BENCHFINISHED${n}` } };
        const name = separationJobName(spec.message.id);
        const metadata = { name, labels: { [USER_LABEL]: `u-bench-${n % 1000}` } };
        await kube.request("POST", collection, { body: { apiVersion: API_VERSION, kind: KIND, metadata, spec } });
        const status = { conditions: [succeeded], steps: { finishedAt: at }, result: { totalSeconds: 10 } };
        await kube.request("PATCH", `${collection}/${name}/status`, { body: { status }, contentType: "application/merge-patch+json" });
      }),
    );
    if ((i / PARALLEL) % 100 === 0) log(`  ${i + PARALLEL} / ${FINISHED}`);
  }
  log(`created in ${((Date.now() - createStarted) / 1000).toFixed(0)} s`);
  await kube.close();

  const runs: { tree: string; idle: number; peak: number; replies: number; seconds?: number; spans: number; exited?: string }[] = [];
  for (const [index, tree] of TREES.entries()) {
    const port = await freePort();
    const env = h.env(ns, {
      JOB_IMAGE: "unmix/job-bench:1",
      JOB_CPU_REQUEST: "1m",
      JOB_MEMORY_REQUEST: "1Mi",
      JOB_MEMORY_LIMIT: "64Mi",
      RECONCILE_CONCURRENCY: "8",
      // BENCH_LEADER_ELECT=false: on a starved machine a 10 s lease renewal can miss, and the controller stops
      LEADER_ELECT: process.env.BENCH_LEADER_ELECT ?? "true",
      LOG_LEVEL: "warn",
      HTTP_PORT: String(port),
      GC_INTERVAL_SECONDS: "20",
      NODE_OPTIONS,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    });
    const logFile = join(h.stack.dir, `controller-memory-${index}.log`);
    const out = createWriteStream(logFile);
    const proc = spawn(process.execPath, ["--import", join(tree, "controller/src/telemetry.ts"), join(tree, "controller/src/main.ts")], {
      cwd: tree,
      env: { PATH: process.env.PATH, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc.stdout.pipe(out);
    proc.stderr.pipe(out);
    const exited = new Promise((r) => proc.once("exit", r));
    const pid = proc.pid as number;
    // the peak as last read while it ran (a controller that exits takes its VmHWM with it)
    let peak = 0;
    let idle = 0;
    let spansBefore = otlp.spans.length;
    let sent: Awaited<ReturnType<typeof h.userSends>>[] = [];
    const gone = () => proc.exitCode !== null || proc.signalCode !== null;
    const alive = () => {
      if (gone()) throw new Error(`the controller exited (${proc.exitCode ?? proc.signalCode}); see ${logFile}`);
      peak = Math.max(peak, kb(pid, "VmHWM"));
    };
    try {
      log(`controller from ${tree}: waiting for it to lead with ${FINISHED} SeparationJobs in its cache`);
      await until(
        "the controller to lead",
        async () => {
          if (gone()) return false; // until() retries on errors: end the wait, alive() below says why
          alive();
          return (
            await fetch(`http://127.0.0.1:${port}/metrics`).then(
              (r) => r.text(),
              () => "",
            )
          ).includes("unmix_controller_is_leader 1")
            ? true
            : undefined;
        },
        600_000,
        1000,
      );
      alive();
      await sleep(15_000); // a few garbage-collection passes over every SeparationJob
      alive();
      idle = kb(pid, "VmRSS");
      spansBefore = otlp.spans.length;
      log(`  RSS ${mb(idle)} MiB idle (peak so far ${mb(kb(pid, "VmHWM"))} MiB); ${MEDIA} users send a 16 MiB voice note`);
      const started = Date.now();
      sent = await Promise.all(
        Array.from({ length: MEDIA }, (_, i) =>
          h.userSends(ns, { content: Buffer.concat([Buffer.from(`OggS${"\u0000".repeat(24)}OpusHead`), Buffer.alloc(16 * MiB - 36, i + 1 + index * MEDIA)]) }),
        ),
      );
      await until(
        `the ${MEDIA} replies`,
        async () => {
          if (gone()) return false;
          alive();
          const done = await Promise.all(sent.map((s) => h.sjs(ns).get(s.name)));
          return done.every((sj) => ["True", "False"].includes(findCondition(sj?.status?.conditions, "Succeeded")?.status ?? "")) ? true : undefined;
        },
        600_000,
        500,
      );
      const seconds = (Date.now() - started) / 1000;
      alive();
      const replies = sent.filter((s) => repliesTo(h.sim, s.wamid).length === 1 && repliesTo(h.sim, s.wamid)[0]?.type === "audio").length;
      runs.push({ tree, idle: mb(idle), peak: mb(peak), replies, seconds, spans: otlp.spans.length - spansBefore });
      log(`  ${replies} / ${MEDIA} replied with the result, in ${seconds.toFixed(1)} s; RSS peak ${mb(peak)} MiB`);
    } catch (err) {
      // recorded, and the next tree still runs
      const replies = sent.filter((s) => repliesTo(h.sim, s.wamid).length === 1).length;
      runs.push({ tree, idle: mb(idle), peak: mb(peak), replies, spans: otlp.spans.length - spansBefore, exited: (err as Error).message });
      log(`  failed: ${(err as Error).message}; RSS peak ${mb(peak)} MiB while it ran`);
    } finally {
      proc.kill("SIGTERM");
      await Promise.race([exited, sleep(30_000)]);
      if (proc.exitCode === null) proc.kill("SIGKILL");
      // what this controller left unfinished is not the next one's load
      for (const s of sent) await h.sjs(ns).delete(s.name);
    }
  }

  console.log(
    `\n${FINISHED} finished SeparationJobs present, ${MEDIA} × 16 MiB voice notes at once (15 MiB results), tracing on, NODE_OPTIONS="${NODE_OPTIONS}"`,
  );
  console.log(`| controller | replies | all replied after | spans | RSS idle | RSS peak (VmHWM) | chart limit ${limit} |`);
  console.log("|---|---|---|---|---|---|---|");
  for (const r of runs)
    console.log(
      `| ${r.tree} | ${r.replies} / ${MEDIA} | ${r.seconds !== undefined ? `${r.seconds.toFixed(1)} s` : `not all: ${r.exited}`} | ${r.spans} | ${r.idle} MiB | ${r.peak} MiB | ${r.peak <= limitMiB ? "within" : "**over**"} |`,
    );
  const last = runs.at(-1);
  assert.ok(last && last.replies === MEDIA, "every message got exactly one reply");
  assert.ok(last.peak <= limitMiB, `the controller's peak ${last.peak} MiB is within the chart's limit ${limit}`);
} catch (err) {
  log(err);
  exitCode = 1;
} finally {
  await otlp.stop();
  await h.stop();
}
process.exit(exitCode);
