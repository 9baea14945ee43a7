// The ingress on the real local stack: NATS JetStream, kube-apiserver (with the SeparationJob CRD
// applied) and MinIO from startStack, the WhatsApp Cloud API simulator for Graph, and the ingress
// itself started from an environment exactly as main.ts would, with its log lines captured.
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { modelId } from "@unmix/api/models";
import { k8s, SeparationJobs } from "@unmix/core/kube";
import { createLogger } from "@unmix/core/log";
import { createObjectStore, type ObjectStore } from "@unmix/core/object-store";
import { ResultCache } from "@unmix/core/result-cache";
import { makeOperator } from "@unmix/e2e/operators";
import { type Component, type Stack, startStack } from "@unmix/e2e/stack";
import { startWhatsAppSimulator, type WhatsAppSimulator } from "@unmix/e2e/whatsapp-sim";
import { parse as parseYaml } from "yaml";
import { parseIngressConfig } from "../src/config.ts";
import { connectNats, type Nats } from "../src/nats.ts";
import { type Ingress, startIngress } from "../src/service.ts";
import { SIGNATURE_HEADER, signInbound } from "../src/signing.ts";

export const APP_SECRET = "test-app-secret-0123456789";
export const VERIFY_TOKEN = "test-verify-token";
export const ACCESS_TOKEN = "EAAG-test-access-token";
export const USER_KEY_SECRET = "test-user-key-secret";
export const SIGNING_KEY = "test-inbound-signing-key";
export const NAMESPACE = "unmix";
export const BUCKET = "unmix-test";
export const MODEL = "htdemucs";
/** What results of MODEL are cached under. */
export const MODEL_ID = modelId(MODEL);
const CRD_FILE = new URL("../../crds/separationjobs.unmix.dev.yaml", import.meta.url);

// Bytes that pass WhatsApp's content checks for their type (so uploads of cached results succeed).
export const ogg = (fill = 0, size = 2000) => Buffer.concat([Buffer.from("OggS"), Buffer.alloc(24), Buffer.from("OpusHead"), Buffer.alloc(size, fill)]);
export const mp4 = (fill = 0, size = 2000) => Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from("ftypisom"), Buffer.alloc(size, fill)]);
export const mp3 = (fill = 0, size = 2000) => Buffer.concat([Buffer.from("ID3"), Buffer.alloc(size, fill)]);

/** Every line the ingress logged, for the "no phone number in logs" checks. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void) {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    done();
  }
  text() {
    return this.lines.join("\n");
  }
}

export interface Harness {
  stack: Stack;
  sim: WhatsAppSimulator;
  ingress: Ingress;
  env: Record<string, string>;
  logs: LogCapture;
  /** A separate client, for looking at streams and buckets the way an operator would. */
  nats: Nats;
  store: ObjectStore;
  cache: ResultCache;
  jobs: SeparationJobs;
  /** A bearer token for the admin listener: an operator ServiceAccount that may list, get, purge and broadcast (with kube). */
  adminToken: string;
  /** That operator's user name, as the audit trail records it. */
  adminUser: string;
  /** Stops and starts the ingress on the same stack (e.g. with other settings). */
  restart(env?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

export async function applyCrd(kc: k8s.KubeConfig): Promise<void> {
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const crd = parseYaml(readFileSync(CRD_FILE, "utf8")) as k8s.V1CustomResourceDefinition;
  await ext.createCustomResourceDefinition({ body: crd });
  const name = crd.metadata?.name as string;
  for (let i = 0; i < 300; i++) {
    const got = await ext.readCustomResourceDefinition({ name });
    if (got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
    await sleep(100);
  }
  // Established comes a moment before the resource's storage answers (429 "storage is initializing")
  const jobs = new SeparationJobs(kc, "default");
  for (let i = 0; i < 300; i++) {
    try {
      await jobs.list();
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error("the SeparationJob CRD never became Established");
}

export async function startHarness(o: { components?: Component[]; env?: Record<string, string> } = {}): Promise<Harness> {
  const components = o.components ?? ["kube", "nats", "s3"];
  const stack = await startStack({ components });
  let sim: WhatsAppSimulator | undefined;
  let ingress: Ingress | undefined;
  let nats: Nats | undefined;
  try {
    if (stack.kube) {
      await applyCrd(stack.kube.kc);
      await stack.kube.kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: NAMESPACE } } });
    }
    sim = await startWhatsAppSimulator({ appSecret: APP_SECRET, accessToken: ACCESS_TOKEN });
    const s3Env: Record<string, string> = stack.s3
      ? { S3_BUCKET: BUCKET }
      : { S3_ENDPOINT: "http://127.0.0.1:9", S3_BUCKET: BUCKET, S3_ACCESS_KEY: "unused", S3_SECRET_KEY: "unused" };
    const env: Record<string, string> = {
      ...stack.env(),
      // the webhook alone runs as its own NATS user, with the webhook's permissions only
      ...(components.includes("kube") ? {} : stack.nats?.env("webhook")),
      ...s3Env,
      ROLE: components.includes("kube") ? "all" : "webhook",
      HOST: "127.0.0.1",
      PORT: "0",
      ADMIN_HOST: "127.0.0.1",
      ADMIN_PORT: "0",
      USER_KEY_SECRET,
      INBOUND_SIGNING_KEY: SIGNING_KEY,
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN,
      WHATSAPP_ACCESS_TOKEN: ACCESS_TOKEN,
      WHATSAPP_API_URL: sim.baseUrl,
      WHATSAPP_API_VERSION: sim.version,
      WHATSAPP_BUSINESS_ACCOUNT_ID: sim.wabaId,
      KUBE_NAMESPACE: NAMESPACE,
      MODEL_NAME: MODEL,
      LOG_LEVEL: "debug",
      ...o.env,
    };
    const store = createObjectStore(parseIngressConfigStore(env));
    if (stack.s3) await store.ensureBucket();
    const logs = new LogCapture();
    const kc = stack.kube?.kc;
    const start = async (e: Record<string, string>) => {
      const config = parseIngressConfig(e);
      const logger = createLogger("unmix-ingress", { level: config.LOG_LEVEL }, logs);
      const started = await startIngress(config, { logger, ...(kc ? { kubeConfig: kc } : {}) });
      sim?.setWebhookUrl(`${started.url}/webhook`);
      return started;
    };
    let current = env;
    ingress = await start(env);
    const adminOperator = kc ? await makeOperator(kc, "support-admin", ["list", "get", "purge", "broadcast"]) : { token: "", username: "" };
    const operator = stack.nats?.users.operator;
    nats = await connectNats({ url: env.NATS_URL as string, name: "test-observer", NATS_USER: operator?.user, NATS_PASSWORD: operator?.password });
    const h: Harness = {
      stack,
      sim,
      ingress,
      env,
      logs,
      nats,
      store,
      cache: new ResultCache(store, 24 * 3600_000),
      jobs: kc ? new SeparationJobs(kc, NAMESPACE) : (undefined as unknown as SeparationJobs),
      adminToken: adminOperator.token,
      adminUser: adminOperator.username,
      async restart(extra = {}) {
        await h.ingress.stop();
        current = { ...current, ...extra };
        h.ingress = await start(current);
      },
      async stop() {
        await h.ingress.stop().catch(() => {});
        await h.nats.close().catch(() => {});
        await h.sim.stop().catch(() => {});
        await stack.stop();
      },
    };
    return h;
  } catch (err) {
    await ingress?.stop().catch(() => {});
    await nats?.close().catch(() => {});
    await sim?.stop().catch(() => {});
    await stack.stop();
    throw err;
  }
}

function parseIngressConfigStore(env: Record<string, string>) {
  return {
    S3_ENDPOINT: env.S3_ENDPOINT as string,
    S3_REGION: env.S3_REGION ?? "us-east-1",
    S3_BUCKET: env.S3_BUCKET as string,
    S3_ACCESS_KEY: env.S3_ACCESS_KEY as string,
    S3_SECRET_KEY: env.S3_SECRET_KEY as string,
  };
}

/** A publish to the inbound stream as the webhook makes it (signed), for tests that bypass the webhook. */
export const asWebhook = (subject: string, payload: string, msgId: string) => ({
  msgId,
  headers: { [SIGNATURE_HEADER]: signInbound(SIGNING_KEY, subject, msgId, payload) },
});

/** Polls `fn` until it returns something other than undefined (the timeout only bounds the wait). */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** All messages currently in a stream (by reading them one by one; small streams only). */
export async function streamMessages(
  nats: Nats,
  stream: string,
  subject?: string,
): Promise<{ subject: string; data: string; headers: Record<string, string> }[]> {
  const info = await nats.jsm.streams.info(stream);
  const out: { subject: string; data: string; headers: Record<string, string> }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    try {
      const m = await nats.jsm.streams.getMessage(stream, { seq });
      if (subject && !matches(subject, m.subject)) continue;
      const headers: Record<string, string> = {};
      for (const k of m.header?.keys() ?? []) headers[k] = m.header.get(k);
      out.push({ subject: m.subject, data: Buffer.from(m.data).toString("utf8"), headers });
    } catch {
      // deleted (acknowledged work-queue message or purged)
    }
  }
  return out;
}

function matches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return true;
    if (f[i] !== "*" && f[i] !== s[i]) return false;
  }
  return f.length === s.length;
}
