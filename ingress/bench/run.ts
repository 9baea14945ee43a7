// The ingress benchmark, one run on one machine (loopback only, bounded in time and count):
//   1. webhook throughput and latency with autocannon, side by side: the full path (signature, zod
//      validation, JetStream publish acknowledged on a real file-store NATS), the same with tracing
//      on (started by the image's --import entry; every request sampled unless OTEL_TRACES_SAMPLER
//      says otherwise; spans exported over OTLP/HTTP to a local receiver), and a bare Fastify route
//      that only checks the signature.
//      Every request is a distinct, correctly signed message.
//   2. the cache-hit path: webhook received → reply request sent to the WhatsApp simulator, on real
//      NATS and MinIO with the worker running.
// Usage (from the repository root): node ingress/bench/run.ts [--duration 10] [--rounds 3] [--connections 50] [--hits 300]
// Targets: ≥ 2,000 webhooks/s, p99 < 50 ms, full ≥ ½ bare, tracing costs ≤ 15 % of throughput and
// p99; cache hit p95 < 250 ms.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { cpus, loadavg } from "node:os";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { modelId } from "@unmix/api/models";
import { k8s } from "@unmix/core/kube";
import { createLogger } from "@unmix/core/log";
import { createObjectStore } from "@unmix/core/object-store";
import { ResultCache } from "@unmix/core/result-cache";
import { createWhatsAppClient, signWebhookBody } from "@unmix/core/whatsapp";
import { startStack } from "@unmix/e2e/stack";
import { startWhatsAppSimulator } from "@unmix/e2e/whatsapp-sim";
import { buildMessage, messagesEnvelope, metaJson } from "@unmix/e2e/whatsapp-sim/webhooks";
import autocannon from "autocannon";
import { parseIngressConfig } from "../src/config.ts";
import { connectNats, STREAMS } from "../src/nats.ts";
import { startIngress } from "../src/service.ts";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "50" },
    hits: { type: "string", default: "300" },
    "hit-concurrency": { type: "string", default: "4" },
    rounds: { type: "string", default: "3" },
  },
});
const DURATION = Math.min(Number(args.duration), 120);
const CONNECTIONS = Math.min(Number(args.connections), 500);
const HITS = Math.min(Number(args.hits), 5000);
const HIT_CONCURRENCY = Math.min(Number(args["hit-concurrency"]), 64);
const ROUNDS = Math.max(1, Math.min(Number(args.rounds), 9));

const APP_SECRET = "bench-app-secret-0123456789";
const baseEnv = {
  WHATSAPP_APP_SECRET: APP_SECRET,
  WHATSAPP_VERIFY_TOKEN: "bench-verify-token",
  USER_KEY_SECRET: "bench-user-key-secret",
  INBOUND_SIGNING_KEY: "bench-inbound-signing-key",
};
const business = { wabaId: "318842120093457", phoneNumberId: "487201336590124", displayPhoneNumber: "4915120004711" };

// A realistic voice-note webhook (non-ASCII profile name, escaped as Meta does); the wamid and the
// sender vary per request.
const template = metaJson(
  messagesEnvelope(business, [
    buildMessage({ type: "audio", id: "wamid.__ID__" }, { waId: "49176__USER__", userId: "DE.58201947736120048815", name: "Zoë Müller" }, Date.now(), {
      id: "1298034471162559",
      mimeType: "audio/ogg; codecs=opus",
      sha256: "q3Zb8Xh0mB1rU2m9yWfJdE6kT4pLs7VcN5aR0oGiHxY=",
      url: "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1298034471162559",
    }),
  ]),
);
const run = `${process.pid.toString(36)}${Date.now().toString(36)}`;
let counter = 0;
function nextRequest(req: Record<string, unknown>) {
  const n = ++counter;
  const body = template.replace("__ID__", `BENCH${run}${n}`).replace("__USER__", String(1000000 + (n % 5000)));
  return {
    ...req,
    method: "POST",
    path: "/webhook",
    body,
    headers: { "content-type": "application/json", "x-hub-signature-256": signWebhookBody(body, APP_SECRET) },
  };
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc; clock ticks of 10 ms). */
function cpuMsOf(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const fields = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** The pid of the stack's nats-server (the one listening on `port`), for its CPU time. */
function natsServerPid(port: string): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (cmd[0]?.endsWith("nats-server") && cmd.includes(port)) return Number(entry);
    } catch {
      // gone
    }
  }
  return undefined;
}

/** An OTLP/HTTP receiver that takes every export and keeps only counts (parsing would load this process). */
async function startSpanSink() {
  const received = { requests: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on("data", (c: Buffer) => {
      received.bytes += c.length;
    });
    req.on("end", () => {
      received.requests++;
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received, stop: () => new Promise((r) => server.close(r)) };
}

async function startServer(mode: "full" | "bare", env: Record<string, string>, nodeArgs: string[] = []) {
  const child = spawn(process.execPath, [...nodeArgs, new URL("./server.ts", import.meta.url).pathname, mode], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [line] = (await once(createInterface({ input: child.stdout }), "line")) as [string];
  const { url } = JSON.parse(line) as { url: string };
  return {
    url,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

interface Row {
  name: string;
  /** CPU µs per request: the server process, nats-server, and this load generator. */
  cpu: { server: number; nats: number; client: number };
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  total: number;
  non2xx: number;
  errors: number;
}

async function load(name: string, url: string, duration: number, pids: { server?: number; nats?: number } = {}): Promise<Row> {
  const before = { server: cpuMsOf(pids.server), nats: cpuMsOf(pids.nats), client: process.cpuUsage() };
  const r = await autocannon({ url, connections: CONNECTIONS, duration, pipelining: 1, requests: [{ setupRequest: nextRequest }] } as autocannon.Options);
  const client = process.cpuUsage(before.client);
  const perRequest = (ms: number) => (ms * 1000) / r.requests.total;
  const cpu = {
    server: perRequest(cpuMsOf(pids.server) - before.server),
    nats: perRequest(cpuMsOf(pids.nats) - before.nats),
    client: perRequest((client.user + client.system) / 1000),
  };
  return {
    name,
    cpu,
    rps: r.requests.average,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    max: r.latency.max,
    total: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  };
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "-");

const stack = await startStack({ components: ["nats", "s3"] });
try {
  const env: Record<string, string> = { ...baseEnv, ...stack.env() };
  console.log(
    `machine: ${cpus().length} × ${cpus()[0]?.model}; load average before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  console.log(`webhook load: ${CONNECTIONS} connections, ${ROUNDS} alternating rounds of ${DURATION} s per target, every request a distinct signed message\n`);

  // 1. full, traced and bare: all servers up, warmed up, then measured in alternating rounds (full,
  // traced, bare, full…) so a neighbour's load on the machine falls on each alike; the median round
  // counts. The traced server runs as the image does, its spans going to a local receiver.
  const sink = await startSpanSink();
  const traced = ["--import", new URL("../src/telemetry.ts", import.meta.url).pathname];
  const servers = {
    full: await startServer("full", env),
    traced: await startServer("full", { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_SERVICE_NAME: "unmix-ingress-bench" }, traced),
    bare: await startServer("bare", env),
  };
  const MODES = ["full", "traced", "bare"] as const;
  const sampler = process.env.OTEL_TRACES_SAMPLER ? `${process.env.OTEL_TRACES_SAMPLER} ${process.env.OTEL_TRACES_SAMPLER_ARG ?? ""}`.trim() : "every request";
  const NAMES = { full: "full webhook (sig + zod + JetStream ack)", traced: `full webhook, traced (${sampler})`, bare: "bare route (signature only)" };
  const natsPid = natsServerPid(new URL(env.NATS_URL as string).port);
  const rounds: Record<(typeof MODES)[number], Row[]> = { full: [], traced: [], bare: [] };
  try {
    for (const mode of MODES) await load(`${mode} (warm-up)`, servers[mode].url, 2);
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of MODES) rounds[mode].push(await load(NAMES[mode], servers[mode].url, DURATION, { server: servers[mode].pid, nats: natsPid }));
    }
  } finally {
    for (const mode of MODES) await servers[mode].stop();
    await sink.stop();
  }
  const median = (rs: Row[]) => [...rs].sort((x, y) => x.rps - y.rps)[Math.floor(rs.length / 2)] as Row;
  const full = median(rounds.full);
  const withTracing = median(rounds.traced);
  const bare = median(rounds.bare);
  console.log("| path | round | req/s | p50 ms | p90 ms | p99 ms | max ms | requests | non-2xx | errors | CPU µs/req: server | nats-server | load generator |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (let round = 0; round < ROUNDS; round++)
    for (const r of MODES.map((mode) => rounds[mode][round]) as Row[])
      console.log(
        `| ${r.name} | ${round + 1}${r === full || r === withTracing || r === bare ? " (median)" : ""} | ${f(r.rps, 0)} | ${r.p50} | ${r.p90} | ${r.p99} | ${r.max} | ${r.total} | ${r.non2xx} | ${r.errors} | ${f(r.cpu.server, 0)} | ${f(r.cpu.nats, 0)} | ${f(r.cpu.client, 0)} |`,
      );
  const ratio = full.rps / bare.rps;
  const cpuTotal = (r: Row) => r.cpu.server + r.cpu.nats + r.cpu.client;
  const cpuRatio = cpuTotal(bare) / cpuTotal(full);
  console.log(`\nfull/bare throughput (median rounds): ${f(ratio * 100, 0)} %; by CPU per webhook, all three processes: ${f(cpuRatio * 100, 0)} %`);
  const tracingThroughput = 1 - withTracing.rps / full.rps;
  const tracingP99 = withTracing.p99 / full.p99 - 1;
  console.log(
    `tracing on vs off (median rounds): throughput ${f(-tracingThroughput * 100, 1)} %, p99 ${full.p99} → ${withTracing.p99} ms (${f(tracingP99 * 100, 0)} %), server CPU ${f(full.cpu.server, 0)} → ${f(withTracing.cpu.server, 0)} µs/webhook; ${sink.received.requests} OTLP exports, ${f(sink.received.bytes / 1e6, 1)} MB`,
  );
  const failed = [...rounds.full, ...rounds.traced, ...rounds.bare].reduce((n, r) => n + r.non2xx + r.errors, 0);

  // 2. cache-hit path, in this process: webhook received → reply request at the simulator. The
  // messages of part 1 are dropped first (they name media no simulator knows).
  const operator = stack.nats?.users.operator;
  const nats = await connectNats({ url: env.NATS_URL as string, name: "bench", NATS_USER: operator?.user, NATS_PASSWORD: operator?.password });
  await nats.jsm.streams.purge(STREAMS.inbound);
  await nats.close();
  const sim = await startWhatsAppSimulator({ appSecret: APP_SECRET, accessToken: "bench-token" });
  const store = createObjectStore({
    S3_ENDPOINT: env.S3_ENDPOINT as string,
    S3_REGION: "us-east-1",
    S3_BUCKET: "bench",
    S3_ACCESS_KEY: env.S3_ACCESS_KEY as string,
    S3_SECRET_KEY: env.S3_SECRET_KEY as string,
  });
  await store.ensureBucket();
  const input = Buffer.concat([Buffer.from("OggS"), Buffer.alloc(24), Buffer.from("OpusHead"), Buffer.alloc(4000, 7)]);
  const cleaned = Buffer.concat([Buffer.from("OggS"), Buffer.alloc(24), Buffer.from("OpusHead"), Buffer.alloc(3000, 9)]);
  const mediaId = await createWhatsAppClient({ baseUrl: sim.baseUrl, version: sim.version, accessToken: "bench-token" }).uploadMedia(
    sim.phoneNumberId,
    cleaned,
    "audio/ogg",
    "c.ogg",
  );
  await store.put("outputs/bench", cleaned, cleaned.length, "audio/ogg");
  await new ResultCache(store, 24 * 3600_000).record(
    { sha256: createHash("sha256").update(input).digest("hex"), format: "ogg-opus", model: modelId("htdemucs") },
    "outputs/bench",
    "ubench",
    mediaId,
  );
  // no API server is needed on a hit: point the client at a closed port so any call would fail loudly
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "none", server: "https://127.0.0.1:9" }],
    users: [{ name: "none" }],
    contexts: [{ name: "none", cluster: "none", user: "none" }],
    currentContext: "none",
  });
  const ingress = await startIngress(
    parseIngressConfig({
      ...env,
      ROLE: "all",
      HOST: "127.0.0.1",
      PORT: "0",
      WHATSAPP_ACCESS_TOKEN: "bench-token",
      WHATSAPP_API_URL: sim.baseUrl,
      WHATSAPP_API_VERSION: sim.version,
      S3_BUCKET: "bench",
      RATE_LIMIT_PER_HOUR: "100000",
      LOG_LEVEL: "warn",
    }),
    { kubeConfig: kc, logger: createLogger("bench", { level: "warn" }) },
  );
  sim.setWebhookUrl(`${ingress.url}/webhook`);
  const latencies: number[] = [];
  let misses = 0;
  let next = 0;
  const one = async () => {
    const i = next++;
    const from = { waId: `4917699${String(i % 1000).padStart(5, "0")}`, name: "Bench" };
    const started = Date.now();
    const sent = await sim.sendUserMessage({ type: "audio", bytes: input, mimeType: "audio/ogg; codecs=opus", from });
    const reply = await sim.waitForMessage((m) => m.replyTo === sent.id && m.type === "audio", 10_000);
    if (reply.mediaId !== mediaId) misses++;
    latencies.push(reply.time - started);
  };
  for (let i = 0; i < 20; i++) await one(); // warm-up
  latencies.length = 0;
  next = 0;
  await Promise.all(
    Array.from({ length: HIT_CONCURRENCY }, async () => {
      while (next < HITS) await one();
    }),
  );
  await ingress.stop();
  await sim.stop();
  latencies.sort((a, b) => a - b);
  console.log(`\ncache hit, webhook received → reply request sent (${latencies.length} messages, ${HIT_CONCURRENCY} users at a time):`);
  console.log("| path | p50 ms | p95 ms | p99 ms | max ms | wrong replies |");
  console.log("|---|---:|---:|---:|---:|---:|");
  console.log(`| cache hit | ${pct(latencies, 50)} | ${pct(latencies, 95)} | ${pct(latencies, 99)} | ${latencies.at(-1)} | ${misses} |`);

  const checks = [
    [`full ≥ 2,000 webhooks/s`, full.rps >= 2000],
    [`full p99 < 50 ms`, full.p99 < 50],
    [`full ≥ ½ bare throughput`, ratio >= 0.5],
    [`tracing costs ≤ 15 % of throughput`, tracingThroughput <= 0.15],
    [`tracing costs ≤ 15 % of p99`, tracingP99 <= 0.15],
    [`spans were exported`, sink.received.requests > 0],
    [`no failed webhook`, failed === 0],
    [`cache hit p95 < 250 ms`, pct(latencies, 95) < 250],
  ] as const;
  console.log(`\n${checks.map(([name, ok]) => `${ok ? "PASS" : "FAIL"} ${name}`).join("\n")}`);
  console.log(
    `load average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  process.exitCode = checks.every(([, ok]) => ok) ? 0 : 1;
} finally {
  await stack.stop();
}
