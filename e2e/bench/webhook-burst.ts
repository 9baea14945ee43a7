// The webhook burst: 10,000 signed webhooks at once against the ingress (the product's own start-up,
// ROLE=webhook, so what it publishes stays in the stream to be counted) on the real NATS JetStream.
// A mix as Meta and an attacker would send: new messages one per webhook and in batches of three,
// duplicates of earlier bytes, forged signatures, bodies over the size limit, signed bodies that
// are not a WhatsApp envelope. Then, as Meta does, every webhook answered 503 or not answered is
// delivered again (up to 5 rounds). With --nats-outage, NATS is killed (SIGKILL) once 40 % of the
// burst is sent and started again 3 s later, so the 503 path carries part of the burst.
//
//   node e2e/bench/webhook-burst.ts [--webhooks 10000] [--connections 64] [--nats-outage] [--untraced] [--heap-mb N]
//
// Fails (exit 1) when a message was lost (a new message neither in the stream nor still answered
// 503), stored twice, or stored from a forged, oversized or malformed webhook; when a webhook got
// another answer than its kind allows; or when the ingress's RSS went over the chart's memory limit
// for the webhook container. Prints throughput, latency percentiles, answers per kind and the RSS.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { signWebhookBody } from "@unmix/core/whatsapp";
import { parse as parseYaml } from "yaml";
import { parseIngressConfig } from "../../ingress/src/config.ts";
import { connectNats, STREAMS } from "../../ingress/src/nats.ts";
import { ROOT, startProduct } from "../src/product.ts";
import { buildMessage, messagesEnvelope, metaJson } from "../src/whatsapp-sim/webhooks.ts";

const { values: args } = parseArgs({
  options: {
    webhooks: { type: "string", default: "10000" },
    connections: { type: "string", default: "64" },
    "nats-outage": { type: "boolean", default: false },
    untraced: { type: "boolean", default: false },
    "heap-mb": { type: "string" },
  },
});
const TOTAL = Number(args.webhooks);
const CONNECTIONS = Number(args.connections);
const OUTAGE = args["nats-outage"];
const REDELIVERIES = 5;

type Kind = "new" | "batch" | "duplicate" | "forged" | "oversized" | "malformed";
/** Share of each kind in the burst, and the answers it may get. */
const MIX: Record<Kind, { share: number; allowed: number[] }> = {
  new: { share: 0.6, allowed: [200, 503] },
  batch: { share: 0.1, allowed: [200, 503] },
  duplicate: { share: 0.15, allowed: [200, 503] },
  forged: { share: 0.1, allowed: [401] },
  oversized: { share: 0.01, allowed: [413] },
  malformed: { share: 0.04, allowed: [400, 422] },
};

const mebibytes = (q: string) => {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`unexpected quantity ${q}`);
  return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
};
const chart = parseYaml(readFileSync(`${ROOT}/charts/unmix/values.yaml`, "utf8")) as { ingress: { resources: { limits: { memory: string } } } };
const RSS_LIMIT_MB = mebibytes(chart.ingress.resources.limits.memory);

// the product as make dev runs it (every request traced, to the in-process OTLP receiver), or with
// no trace sampled (--untraced), to see what tracing costs under the burst
// --heap-mb caps V8's old space (NODE_OPTIONS), as a container's memory limit would size it
const p = await startProduct({
  ingressEnv: {
    ROLE: "webhook",
    LOG_LEVEL: "warn",
    ...(args.untraced ? { OTEL_TRACES_SAMPLER: "always_off" } : {}),
    ...(args["heap-mb"] ? { NODE_OPTIONS: `--max-old-space-size=${Number(args["heap-mb"])}` } : {}),
  },
});
const secret = p.ingress.env.WHATSAPP_APP_SECRET as string;
/** The body limit the ingress runs with (WEBHOOK_BODY_LIMIT_BYTES, its default here). */
const BODY_LIMIT = parseIngressConfig(p.ingress.env).WEBHOOK_BODY_LIMIT_BYTES as number;
const url = `${p.ingress.url}/webhook`;
const business = { wabaId: p.sim.wabaId, phoneNumberId: p.sim.phoneNumberId, displayPhoneNumber: p.sim.displayPhoneNumber };

// ---------------------------------------------------------------- the burst, built before it starts

interface Webhook {
  kind: Kind;
  body: Buffer;
  signature: string;
  /** The wamids of the messages it carries. */
  ids: string[];
}
let n = 0;
const user = (i: number) => ({ waId: `49176${String(10_000_000 + (i % 5000)).padStart(8, "0")}`, name: `Bench User ${i % 5000}` });
function envelope(count: number): { body: Buffer; ids: string[] } {
  const built = Array.from({ length: count }, () => {
    const id = `wamid.BURST${(++n).toString(36).padStart(6, "0")}`;
    return buildMessage({ type: "text", body: "hello", id }, user(n), Date.now(), undefined);
  });
  return { body: Buffer.from(metaJson(messagesEnvelope(business, built))), ids: built.map((b) => (b.message as { id: string }).id) };
}
const signed = (kind: Kind, e: { body: Buffer; ids: string[] }): Webhook => ({ kind, ...e, signature: signWebhookBody(e.body, secret) });
const oversized = Buffer.alloc(BODY_LIMIT + 1024, 0x20);

// a fixed shuffle (mulberry32), so every run sends the same sequence
let seed = 20261202;
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const kinds: Kind[] = (Object.keys(MIX) as Kind[]).flatMap((k) => Array<Kind>(Math.round(MIX[k].share * TOTAL)).fill(k));
for (let i = kinds.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [kinds[i], kinds[j]] = [kinds[j] as Kind, kinds[i] as Kind];
}
const burst: Webhook[] = [];
const genuine: Webhook[] = [];
for (const kind of kinds) {
  if (kind === "new") {
    burst.push(signed(kind, envelope(1)));
    genuine.push(burst.at(-1) as Webhook);
  } else if (kind === "batch") burst.push(signed(kind, envelope(3)));
  else if (kind === "duplicate") {
    const earlier = genuine[Math.floor(random() * genuine.length)];
    // the very same bytes again (the first ones, when it comes before any)
    burst.push(earlier ? { ...earlier, kind } : signed("new", envelope(1)));
  } else if (kind === "forged") {
    const e = envelope(1);
    burst.push({ kind, ...e, signature: signWebhookBody(e.body, `${secret}-not`) });
  } else if (kind === "oversized") burst.push({ kind, body: oversized, signature: signWebhookBody(oversized, secret), ids: [] });
  else burst.push(signed(kind, { body: Buffer.from(JSON.stringify({ object: "whatsapp_business_account", entry: [{ changes: "x" }] })), ids: [] }));
}
const genuineIds = new Set(burst.filter((w) => w.kind === "new" || w.kind === "batch").flatMap((w) => w.ids));
const refusedIds = new Set(burst.filter((w) => w.kind === "forged").flatMap((w) => w.ids));

// ---------------------------------------------------------------- sending, with the ingress's RSS sampled

const rssMb = () => {
  const status = readFileSync(`/proc/${p.ingress.proc.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
};
const rss = { before: rssMb(), peak: 0, after: 0 };
let sampling = true;
const sampler = (async () => {
  while (sampling) {
    rss.peak = Math.max(rss.peak, rssMb());
    await sleep(50);
  }
})();

async function deliver(w: Webhook): Promise<number> {
  try {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "x-hub-signature-256": w.signature }, body: w.body });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0; // no answer: Meta delivers it again
  }
}

/** The outage: NATS killed as a crash would, back 3 s later on the same file store. */
let outage: Promise<void> | undefined;
async function natsOutage() {
  if (!OUTAGE) return;
  const nats = p.stack.nats as NonNullable<typeof p.stack.nats>;
  await nats.crash();
  await sleep(3000);
  await nats.start();
}

const answers = new Map<Kind, Map<number, number>>();
const latencies: number[] = [];
async function send(list: Webhook[], record: boolean): Promise<Webhook[]> {
  const again: Webhook[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (next < list.length) {
        if (record && next === Math.floor(list.length * 0.4)) outage = natsOutage();
        const w = list[next++] as Webhook;
        const t0 = performance.now();
        const status = await deliver(w);
        if (record) {
          latencies.push(performance.now() - t0);
          const per = answers.get(w.kind) ?? new Map<number, number>();
          per.set(status, (per.get(status) ?? 0) + 1);
          answers.set(w.kind, per);
        }
        if ((status === 503 || status === 0) && w.ids.length && w.kind !== "forged") again.push(w);
      }
    }),
  );
  return again;
}

const t0 = performance.now();
let pending = await send(burst, true);
const seconds = (performance.now() - t0) / 1000;
await outage;
const retried = pending.length;
for (let round = 0; round < REDELIVERIES && pending.length; round++) {
  await sleep(1000 * 2 ** round);
  pending = await send(pending, false);
}
sampling = false;
await sampler;
rss.after = rssMb();

// ---------------------------------------------------------------- what JetStream kept

const nats = await connectNats({ url: p.stack.nats?.url as string, name: "webhook-burst" });
const stored = new Map<string, number>();
const info = await nats.jsm.streams.info(STREAMS.inbound);
for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
  const m = await nats.jsm.streams.getMessage(STREAMS.inbound, { seq }).catch(() => undefined);
  const id = m?.header?.get("Nats-Msg-Id");
  if (id) stored.set(id, (stored.get(id) ?? 0) + 1);
}
await nats.close();
await p.stop();

// ---------------------------------------------------------------- the report

const stillRefused = new Set(pending.flatMap((w) => w.ids));
const lost = [...genuineIds].filter((id) => !stored.has(id) && !stillRefused.has(id));
const twice = [...stored].filter(([, c]) => c > 1).map(([id]) => id);
const intruders = [...stored.keys()].filter((id) => !genuineIds.has(id));
const forgedKept = intruders.filter((id) => refusedIds.has(id));
const unexpected = [...answers].flatMap(([kind, per]) =>
  [...per].filter(([s]) => !MIX[kind].allowed.includes(s)).map(([s, c]) => `${kind}: ${c} × ${s || "no answer"}`),
);

latencies.sort((a, b) => a - b);
const pct = (q: number) => (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] as number).toFixed(1);
console.log(
  `\n${burst.length} webhooks (${genuineIds.size} new messages) over ${CONNECTIONS} connections in ${seconds.toFixed(2)} s${OUTAGE ? ", NATS killed at 40 % and back 3 s later" : ""}`,
);
console.log(`throughput ${(burst.length / seconds).toFixed(0)} webhooks/s; latency ms p50 ${pct(0.5)}, p95 ${pct(0.95)}, p99 ${pct(0.99)}, max ${pct(1)}`);
console.log("\n| kind | sent | answers |\n|---|---|---|");
for (const kind of Object.keys(MIX) as Kind[]) {
  const per = answers.get(kind) ?? new Map();
  const sent = [...per.values()].reduce((a, b) => a + b, 0);
  console.log(`| ${kind} | ${sent} | ${[...per].map(([s, c]) => `${s || "no answer"}: ${c}`).join(", ")} |`);
}
console.log(`\nredelivered after 503 or no answer: ${retried} webhooks; still refused after ${REDELIVERIES} rounds: ${pending.length}`);
console.log(`in the stream: ${stored.size} messages; lost ${lost.length}; stored twice ${twice.length}; from forged or other webhooks ${intruders.length}`);
console.log(`ingress RSS MiB: before ${rss.before.toFixed(0)}, peak ${rss.peak.toFixed(0)}, after ${rss.after.toFixed(0)} (chart limit ${RSS_LIMIT_MB})`);

const failures = [
  ...(lost.length ? [`${lost.length} messages lost (e.g. ${lost.slice(0, 3).join(", ")})`] : []),
  ...(twice.length ? [`${twice.length} stored twice`] : []),
  ...(intruders.length ? [`${intruders.length} stored that no genuine webhook carried (${forgedKept.length} forged)`] : []),
  ...(unexpected.length ? [`answers outside the contract: ${unexpected.join("; ")}`] : []),
  ...(rss.peak > RSS_LIMIT_MB ? [`RSS peak ${rss.peak.toFixed(0)} MiB over the chart limit ${RSS_LIMIT_MB} MiB`] : []),
];
if (failures.length) {
  console.error(`\nFAILED: ${failures.join("; ")}`);
  process.exit(1);
}
