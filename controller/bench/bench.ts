// Benchmark: N SeparationJobs created at once on the real local stack (a node advertising N GPUs,
// the cheapest job that honours the contract), the controller as its own process. Reports
// throughput, API requests per SeparationJob (counted in the controller's client), and the
// controller's peak resident memory (VmHWM); checks that every job reached Succeeded with exactly
// one reply. Usage: node controller/bench/bench.ts [N=1000] [concurrency=8]
// BENCH_TRACING=1 runs the controller with tracing on (its --import entry, every SeparationJob's
// trace sampled), exporting to a local OTLP receiver.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findCondition } from "@unmix/api/conditions";
import { startOtlpReceiver } from "@unmix/e2e/otlp-receiver";
import { freePort } from "@unmix/e2e/stack/ports";
import { ROOT, repliesTo, spawnController, startHarness, until } from "../test/harness.ts";
import { standInJobOutput } from "./stand-in-job.ts";

const N = Number(process.argv[2] ?? 1000);
const CONCURRENCY = Number(process.argv[3] ?? 8);
const CREATE_PARALLELISM = 50;

const dir = standInJobOutput({ prefix: "unmix-bench-", sizeBytes: 2064, fill: 1, mediaSeconds: 4, separateSeconds: 0.01 });

const log = (...a: unknown[]) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const status = (pid: number) => readFileSync(`/proc/${pid}/status`, "utf8");
const kb = (text: string, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1] ?? 0);

log(`starting the stack with ${N} GPUs`);
const h = await startHarness({
  gpus: N,
  images: { "unmix/job-bench": { entrypoint: ["/bin/sh", join(ROOT, "controller/bench/bench-job.sh")], env: { BENCH_DIR: dir } } },
});
const otlp = process.env.BENCH_TRACING === "1" ? await startOtlpReceiver() : undefined;
let exitCode = 0;
try {
  const ns = await h.namespace();
  const port = await freePort();
  log(`${N} users send a voice note`);
  const messages = [];
  for (let i = 0; i < N; i += CREATE_PARALLELISM) {
    messages.push(...(await Promise.all(Array.from({ length: Math.min(CREATE_PARALLELISM, N - i) }, (_, j) => h.userMessage({ content: `bench ${i + j}` })))));
  }

  const controller = spawnController(
    h,
    h.env(ns, {
      JOB_IMAGE: "unmix/job-bench:1",
      JOB_CPU_REQUEST: "1m",
      JOB_MEMORY_REQUEST: "1Mi",
      JOB_MEMORY_LIMIT: "64Mi",
      JOB_TTL_SECONDS_AFTER_FINISHED: "3600",
      RECONCILE_CONCURRENCY: String(CONCURRENCY),
      LEADER_ELECT: "true",
      LOG_LEVEL: "warn",
      HTTP_PORT: String(port),
      // e.g. "--max-old-space-size=96", or "--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=/tmp" to look inside
      ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}),
      ...(process.env.MALLOC_ARENA_MAX ? { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX } : {}),
      ...(otlp ? { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" } : {}),
    }),
  );
  const pid = controller.proc.pid as number;
  const metricsUrl = `http://127.0.0.1:${port}`;
  await until(
    "the controller to lead with full caches",
    async () =>
      (await fetch(`${metricsUrl}/metrics`)).ok && (await (await fetch(`${metricsUrl}/metrics`)).text()).includes("unmix_controller_is_leader 1")
        ? true
        : undefined,
    60_000,
  );
  const idleRss = kb(status(pid), "VmRSS");
  const before = await scrape(metricsUrl);

  log(`creating ${N} SeparationJobs at once`);
  const started = Date.now();
  const sjs = h.sjs(ns);
  for (let i = 0; i < N; i += CREATE_PARALLELISM) await Promise.all(messages.slice(i, i + CREATE_PARALLELISM).map((m) => sjs.create(m.job)));
  const created = Date.now();
  log(`created in ${((created - started) / 1000).toFixed(1)} s; waiting for all to finish`);

  let peakSampled = 0;
  let done = 0;
  let last = -1;
  const deadline = Date.now() + 60 * 60_000;
  while (done < N) {
    peakSampled = Math.max(peakSampled, kb(status(pid), "VmRSS"));
    const list = (await sjs.list()).items;
    done = list.filter((s) => ["True", "False"].includes(findCondition(s.status?.conditions, "Succeeded")?.status ?? "")).length;
    if (done !== last) {
      const m = await (await fetch(`${metricsUrl}/metrics`)).text();
      const mb = (name: string) => (Number(new RegExp(`^unmix_controller_${name} (\\S+)`, "m").exec(m)?.[1] ?? 0) / 1e6).toFixed(0);
      log(
        `${done}/${N} finished; controller RSS ${(kb(status(pid), "VmRSS") / 1024).toFixed(0)} MB (heap ${mb("nodejs_heap_size_used_bytes")}/${mb("nodejs_heap_size_total_bytes")} MB, external ${mb("nodejs_external_memory_bytes")} MB), queue ${/^unmix_controller_workqueue_depth (\d+)/m.exec(m)?.[1]}, sockets ${
          readdirSync(`/proc/${pid}/fd`).filter((f) => {
            try {
              return readlinkSync(`/proc/${pid}/fd/${f}`).startsWith("socket:");
            } catch {
              return false;
            }
          }).length
        }`,
      );
    }
    last = done;
    if (Date.now() > deadline) throw new Error(`only ${done}/${N} finished within an hour`);
    if (done < N) await sleep(2000);
  }
  const finished = Date.now();
  const proc = status(pid);
  const peak = kb(proc, "VmHWM");
  const after = await scrape(metricsUrl);
  if (process.env.BENCH_NODE_OPTIONS?.includes("heapsnapshot-signal")) {
    process.kill(pid, "SIGUSR2");
    await sleep(15_000);
  }
  const metricsText = await (await fetch(`${metricsUrl}/metrics`)).text();
  for (const line of metricsText.split("\n"))
    if (
      /^unmix_controller_(reconcile_duration_seconds_count|nodejs_heap_space_size_total_bytes|nodejs_external_memory_bytes|nodejs_heap_size_total_bytes|workqueue_retries_total|watch_restarts_total)/.test(
        line,
      )
    )
      log(line);

  // none lost: every one Succeeded, each with exactly one reply
  const all = (await sjs.list()).items;
  const ok = all.filter((s) => findCondition(s.status?.conditions, "Succeeded")?.status === "True");
  const oneReplyEach = messages.every((m) => repliesTo(h.sim, m.wamid).length === 1);
  const firstDone = Math.min(...all.map((s) => Date.parse(s.status?.steps?.finishedAt ?? "9999")));
  const totals = all.map((s) => s.status?.result?.totalSeconds ?? 0).sort((a, b) => a - b);

  const requests = Object.fromEntries(Object.entries(after.requests).map(([verb, n]) => [verb, n - (before.requests[verb] ?? 0)]));
  const totalRequests = Object.values(requests).reduce((a, b) => a + b, 0);
  const reconciles = after.reconciles - before.reconciles;
  const rows: [string, string][] = [
    ["SeparationJobs", String(N)],
    ["succeeded / with exactly one reply", `${ok.length} / ${oneReplyEach ? N : "NOT ALL"}`],
    ["reconcile workers", String(CONCURRENCY)],
    ["creating them took", `${((created - started) / 1000).toFixed(1)} s`],
    ["first finished after", `${((firstDone - started) / 1000).toFixed(1)} s`],
    ["all finished after", `${((finished - started) / 1000).toFixed(1)} s`],
    ["throughput", `${(N / ((finished - started) / 1000)).toFixed(1)} SeparationJobs/s`],
    ["message-to-reply p50 / p95", `${totals[Math.floor(N * 0.5)]?.toFixed(1)} s / ${totals[Math.floor(N * 0.95)]?.toFixed(1)} s`],
    [
      "API requests per SeparationJob",
      `${(totalRequests / N).toFixed(2)} (${Object.entries(requests)
        .map(([v, n]) => `${v} ${(n / N).toFixed(2)}`)
        .join(", ")})`,
    ],
    ["reconcile passes per SeparationJob (that acted)", (reconciles / N).toFixed(2)],
    ["controller RSS idle → peak (VmHWM)", `${(idleRss / 1024).toFixed(0)} MB → ${(peak / 1024).toFixed(0)} MB`],
    ["tracing", otlp ? `on: ${otlp.spans.filter((x) => x.service === "unmix-controller").length} spans exported` : "off"],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  console.log(`\n| ${"measure".padEnd(width)} | value |\n|${"-".repeat(width + 2)}|-------|`);
  for (const [k, v] of rows) console.log(`| ${k.padEnd(width)} | ${v} |`);
  assert.equal(ok.length, N, "every SeparationJob succeeded");
  assert.ok(oneReplyEach, "exactly one reply each");
  await controller.kill("SIGTERM");
} catch (err) {
  console.error(err);
  exitCode = 1;
} finally {
  await h.stop();
  await otlp?.stop();
}
process.exit(exitCode);

async function scrape(url: string): Promise<{ requests: Record<string, number>; reconciles: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const requests: Record<string, number> = {};
  for (const m of text.matchAll(/^unmix_controller_kube_requests_total\{verb="(\w+)"\} (\d+)/gm)) requests[m[1] as string] = Number(m[2]);
  let reconciles = 0;
  for (const m of text.matchAll(/^unmix_controller_reconcile_duration_seconds_count\{[^}]*\} (\d+)/gm)) reconciles += Number(m[1]);
  return { requests, reconciles };
}
