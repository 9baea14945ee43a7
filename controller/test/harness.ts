// The real local stack (etcd, kube-apiserver, the real Job controller, scheduler and garbage
// collector, a node agent running pods as local processes, MinIO) plus the WhatsApp simulator, and
// the controller under test, in this process or as a child process that can be killed.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { findCondition } from "@unmix/api/conditions";
import { type OutputFormat, ReceiptStatus, type SeparationJob, separationJobName } from "@unmix/api/separationjob";
import { AUDIT_STREAM, AUDIT_SUBJECTS, type AuditEntry, connectAuditLog } from "@unmix/core/audit";
import { k8s, type NewSeparationJob, SeparationJobs } from "@unmix/core/kube";
import { createLogger } from "@unmix/core/log";
import { createObjectStore, type ObjectStore } from "@unmix/core/object-store";
import { userKey } from "@unmix/core/privacy";
import { type ImageMapping, type Stack, startStack } from "@unmix/e2e/stack";
import { type SentMessage, startWhatsAppSimulator, type WhatsAppSimulator } from "@unmix/e2e/whatsapp-sim";
import { connect, type NatsConnection, nanos } from "nats";
import { parse } from "yaml";
import { loadControllerConfig } from "../src/config.ts";
import { Controller } from "../src/controller.ts";
import { kubeconfigConnection } from "../src/framework/kube/connection.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const STANDIN_IMAGE = "unmix/job-standin";
export const BUCKET = "unmix-test";
const APP_SECRET = "app-secret-for-tests";
const ACCESS_TOKEN = "EAAG-test-token";
const USER_KEY_SECRET = "user-key-secret";

export interface Harness {
  stack: Stack;
  sim: WhatsAppSimulator;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  batch: k8s.BatchV1Api;
  store: ObjectStore;
  /** Environment for a controller watching `namespace`. */
  env(namespace: string, extra?: Record<string, string>): Record<string, string>;
  namespace(): Promise<string>;
  sjs(namespace: string): SeparationJobs;
  /** A user sends media on WhatsApp; the SeparationJob the ingress would create is created. */
  userSends(namespace: string, o: UserSends): Promise<{ name: string; wamid: string; mediaId: string; bytes: Buffer }>;
  /** The message only: what the ingress would create, not created yet. */
  userMessage(o: UserSends): Promise<{ job: NewSeparationJob; name: string; wamid: string; mediaId: string; bytes: Buffer }>;
  /** Receipts for the bot's messages turn into the annotation the controller reads (the ingress's part). */
  enableReceipts(on: boolean): void;
  /** Every entry of the audit stream (read as the NATS operator). */
  auditEntries(): Promise<AuditEntry[]>;
  /** The operator's connection (e.g. to make the audit stream refuse writes). */
  nats: NatsConnection;
  stop(): Promise<void>;
}

export interface UserSends {
  content: string | Buffer;
  type?: "audio" | "video";
  mimeType?: string;
  voice?: boolean;
  format?: OutputFormat;
  /** Another media id than the one sent (e.g. one WhatsApp no longer has). */
  mediaId?: string;
  /** The sender's number (wa_id); the simulator's default user when absent. */
  from?: string;
}

export async function startHarness(o: { gpus?: number; images?: Record<string, ImageMapping> } = {}): Promise<Harness> {
  // the ingress's webhook, as far as the simulator needs one: it answers 200, and (when enabled)
  // turns a status receipt into the SeparationJob annotation, as the ingress is to do
  let receipts = false;
  let sjsByNs: ((name: string) => SeparationJobs | undefined) | undefined;
  const webhook: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      res.writeHead(200).end();
      if (receipts) void onWebhook(Buffer.concat(chunks).toString()).catch(() => {});
    });
  });
  await new Promise<void>((r) => webhook.listen(0, "127.0.0.1", r));
  const webhookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/webhook`;
  const sim = await startWhatsAppSimulator({ appSecret: APP_SECRET, accessToken: ACCESS_TOKEN, webhookUrl, statusReceipts: true });

  async function onWebhook(body: string) {
    type Status = { id: string; status: string; timestamp: string; biz_opaque_callback_data?: string };
    const statuses = JSON.parse(body).entry?.[0]?.changes?.[0]?.value?.statuses as Status[] | undefined;
    for (const s of statuses ?? []) {
      const status = ReceiptStatus.safeParse(s.status);
      const callback = s.biz_opaque_callback_data;
      if (!status.success || !callback) continue;
      // the ingress's worker makes the same call (ingress/src/handler.ts confirmReply)
      const receipt = { status: status.data, at: new Date(Number(s.timestamp) * 1000).toISOString() };
      for (const ns of namespaces) await sjsByNs?.(ns)?.recordReplyReceipt(callback, receipt);
    }
  }

  const stack = await startStack({
    components: ["kube", "nats", "s3"],
    gpus: o.gpus ?? 4,
    images: { [STANDIN_IMAGE]: { entrypoint: ["/bin/sh", join(ROOT, "controller/test/standin-job.sh")] }, ...o.images },
  });
  const kc = stack.kube?.kc as k8s.KubeConfig;
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const batch = kc.makeApiClient(k8s.BatchV1Api);
  await applyCrd(kc);
  const s3 = stack.s3 as NonNullable<Stack["s3"]>;
  const store = createObjectStore({
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: s3.region,
    S3_BUCKET: BUCKET,
    S3_ACCESS_KEY: s3.accessKey,
    S3_SECRET_KEY: s3.secretKey,
  });
  await store.ensureBucket();
  // the audit stream, as the ingress creates it (the controller's NATS user may only publish to it)
  const nats = stack.nats as NonNullable<Stack["nats"]>;
  const nc = await connect(nats.connectOptions("operator"));
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: AUDIT_STREAM, subjects: [AUDIT_SUBJECTS], duplicate_window: nanos(600_000) });

  const namespaces: string[] = [];
  const clients = new Map<string, SeparationJobs>();
  sjsByNs = (ns) => clients.get(ns);
  let seq = 0;

  const h: Harness = {
    stack,
    sim,
    kc,
    core,
    batch,
    store,
    env: (namespace, extra = {}) => ({
      ...nats.env("controller"),
      KUBECONFIG: stack.kube?.kubeconfigPath as string,
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: s3.region,
      S3_BUCKET: BUCKET,
      S3_ACCESS_KEY: s3.accessKey,
      S3_SECRET_KEY: s3.secretKey,
      WHATSAPP_API_URL: sim.baseUrl,
      WHATSAPP_API_VERSION: sim.version,
      WHATSAPP_ACCESS_TOKEN: ACCESS_TOKEN,
      KUBE_NAMESPACE: namespace,
      JOB_IMAGE: `${STANDIN_IMAGE}:test`,
      JOB_CPU_REQUEST: "10m",
      JOB_MEMORY_REQUEST: "16Mi",
      JOB_MEMORY_LIMIT: "256Mi",
      JOB_BACKOFF_LIMIT: "1",
      JOB_TOLERATIONS: "[]",
      RETRY_BASE_MS: "200",
      RETRY_MAX_SECONDS: "5",
      LEADER_ELECT: "false",
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: "0",
      REPLY_CONFIRM_SECONDS: "4",
      // the tests' messages all come from one user: the per-user limit is tested on its own (fairness.test.ts)
      PER_USER_MAX_ACTIVE_JOBS: "0",
      LOG_LEVEL: "info",
      ...extra,
    }),
    async namespace() {
      const name = `t${++seq}-${Date.now().toString(36)}`;
      await core.createNamespace({ body: { metadata: { name } } });
      await waitForServiceAccount(core, name);
      namespaces.push(name);
      return name;
    },
    sjs(namespace) {
      let c = clients.get(namespace);
      if (!c) {
        c = new SeparationJobs(kc, namespace);
        clients.set(namespace, c);
      }
      return c;
    },
    async userSends(namespace, u) {
      const m = await h.userMessage(u);
      await h.sjs(namespace).create(m.job);
      return { name: m.name, wamid: m.wamid, mediaId: m.mediaId, bytes: m.bytes };
    },
    async userMessage(u) {
      const type = u.type ?? "audio";
      const bytes = Buffer.isBuffer(u.content) ? u.content : Buffer.from(u.content);
      const mimeType = u.mimeType ?? (type === "video" ? "video/mp4" : "audio/ogg; codecs=opus");
      const sent = await sim.sendUserMessage({
        type,
        bytes,
        mimeType,
        ...(type === "audio" ? { voice: u.voice ?? mimeType.startsWith("audio/ogg") } : {}),
        ...(u.from ? { from: { waId: u.from, name: "Fleet User" } } : {}),
      } as never);
      // what the ingress would read from the webhook
      const value = JSON.parse(sent.body).entry[0].changes[0].value;
      const msg = value.messages[0];
      const media = msg[type];
      const format: OutputFormat =
        u.format ?? (type === "video" ? "mp4" : mimeType.startsWith("audio/ogg") ? "ogg-opus" : mimeType === "audio/mpeg" ? "mp3" : "m4a");
      const spec = {
        message: { timestamp: new Date(Number(msg.timestamp) * 1000).toISOString(), phoneNumberId: value.metadata.phone_number_id },
        media: {
          id: u.mediaId ?? media.id,
          mimeType: media.mime_type,
          sha256: media.sha256,
          kind: type,
          voice: type === "audio" ? media.voice === true : false,
        },
        output: { format },
      };
      const job: NewSeparationJob = {
        spec,
        sender: { messageId: msg.id, waId: msg.from, ...(msg.from_user_id ? { userId: msg.from_user_id } : {}), profileName: value.contacts[0].profile.name },
        userKey: userKey(msg.from, USER_KEY_SECRET),
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      };
      return { job, name: separationJobName(msg.id), wamid: msg.id, mediaId: media.id, bytes };
    },
    enableReceipts(on) {
      receipts = on;
    },
    nats: nc,
    async auditEntries() {
      const info = await jsm.streams.info(AUDIT_STREAM);
      const out: AuditEntry[] = [];
      for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(AUDIT_STREAM, { seq }).catch(() => undefined);
        if (m) out.push(m.json<AuditEntry>());
      }
      return out;
    },
    async stop() {
      await nc.close().catch(() => {});
      await stack.stop();
      await sim.stop();
      await new Promise((r) => webhook.close(r));
    },
  };
  return h;
}

async function waitForServiceAccount(core: k8s.CoreV1Api, namespace: string) {
  await until(`default service account in ${namespace}`, async () => {
    try {
      await core.readNamespacedServiceAccount({ name: "default", namespace });
      return true;
    } catch {
      return undefined;
    }
  });
}

export async function applyCrd(kc: k8s.KubeConfig): Promise<void> {
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const crd = parse(readFileSync(join(ROOT, "crds/separationjobs.unmix.dev.yaml"), "utf8"));
  try {
    await ext.createCustomResourceDefinition({ body: crd });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
  await until("the CRD to be established", async () => {
    const c = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    return c.status?.conditions?.some((x) => x.type === "Established" && x.status === "True") ? true : undefined;
  });
}

export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ""}`);
    await sleep(everyMs);
  }
}

/** Waits until the SeparationJob's Succeeded condition is True or False. */
export function finished(h: Harness, namespace: string, name: string, timeoutMs = 90_000): Promise<SeparationJob> {
  return until(
    `SeparationJob ${name} to finish`,
    async () => {
      const sj = await h.sjs(namespace).get(name);
      const s = findCondition(sj?.status?.conditions, "Succeeded")?.status;
      return s === "True" || s === "False" ? sj : undefined;
    },
    timeoutMs,
  );
}

export const succeeded = (sj: SeparationJob) => findCondition(sj.status?.conditions, "Succeeded");

/** The bot's replies (not reactions) quoting a given message. */
export const repliesTo = (sim: WhatsAppSimulator, wamid: string): SentMessage[] =>
  sim.sentMessages().filter((m) => m.type !== "reaction" && m.replyTo === wamid);

/**
 * Watches a namespace's Jobs and keeps, per group (`groupOf` the Job's SeparationJob, e.g. its
 * sender), the most that existed unfinished at the same time: what a per-sender limit bounds.
 */
export async function watchJobConcurrency(h: Harness, namespace: string, groupOf: (sjName: string) => string | undefined) {
  const active = new Map<string, Set<string>>();
  const most = new Map<string, number>();
  const finished = (j: k8s.V1Job) => j.status?.conditions?.some((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True") ?? false;
  let stopped = false;
  let abort: AbortController | undefined;
  // a watch the API server (or a busy machine) ends is started again: ADDED events for every Job
  // there is then, which the sets take as they are
  const start = async (): Promise<void> => {
    abort = await new k8s.Watch(h.kc).watch(
      `/apis/batch/v1/namespaces/${namespace}/jobs`,
      {},
      (type: string, j: k8s.V1Job) => {
        const name = j.metadata?.name ?? "";
        const group = groupOf(name);
        if (!group) return;
        const set = active.get(group) ?? new Set<string>();
        active.set(group, set);
        if (type === "DELETED" || finished(j)) set.delete(name);
        else set.add(name);
        most.set(group, Math.max(most.get(group) ?? 0, set.size));
      },
      () => {
        if (!stopped) setTimeout(() => void start().catch(() => {}), 200);
      },
    );
  };
  await start();
  return {
    most: (group: string) => most.get(group) ?? 0,
    stop: () => {
      stopped = true;
      abort?.abort();
    },
  };
}

/** Every stored object of a SeparationJob: its input and whatever its job wrote. */
export async function storedFor(store: ObjectStore, name: string): Promise<string[]> {
  const keys: string[] = [];
  for (const prefix of [`inputs/${name}`, `work/${name}/`]) for await (const o of store.list(prefix)) keys.push(o.key);
  return keys;
}

export async function eventsOf(core: k8s.CoreV1Api, namespace: string, name: string): Promise<{ reason?: string; message?: string; type?: string }[]> {
  const list = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
  return list.items.map((e) => ({ reason: e.reason, message: e.message, type: e.type }));
}

// ── the controller under test ─────────────────────────────────────────────────────────────

export interface InProcessController {
  controller: Controller;
  running: Promise<"stopped" | "lost">;
  stop(): Promise<void>;
}

export async function startController(h: Harness, env: Record<string, string>, o: { clock?: () => Date; logFile?: string } = {}): Promise<InProcessController> {
  const config = loadControllerConfig(env);
  const log = createLogger(
    "unmix-controller",
    { level: "info" },
    createWriteStream(o.logFile ?? join(logDir(h), `controller-${env.KUBE_NAMESPACE}.log`), { flags: "a" }),
  );
  const audit = connectAuditLog(config.nats, "controller-under-test");
  const controller = new Controller({ config, kube: await kubeconfigConnection(env.KUBECONFIG as string), log, audit, ...(o.clock ? { clock: o.clock } : {}) });
  const running = controller.run();
  return {
    controller,
    running,
    async stop() {
      await controller.stop();
      await audit.close();
      await running;
    },
  };
}

export interface ChildController {
  proc: ChildProcess;
  exited: Promise<number | string>;
  logFile: string;
  kill(signal?: NodeJS.Signals): Promise<number | string>;
}

let children = 0;

/** Controller logs go to the stack's folder (removed at the end), or to UNMIX_TEST_LOG_DIR to keep them. */
function logDir(h: Harness): string {
  const dir = process.env.UNMIX_TEST_LOG_DIR;
  if (dir) mkdirSync(dir, { recursive: true });
  return dir ?? h.stack.dir;
}

/** `node --import ./controller/src/telemetry.ts controller/src/main.ts` as its own process (to be killed at any point). */
export function spawnController(h: Harness, env: Record<string, string>): ChildController {
  const logFile = join(logDir(h), `controller-child-${++children}.log`);
  const out = createWriteStream(logFile);
  const proc = spawn(process.execPath, ["--import", join(ROOT, "controller/src/telemetry.ts"), join(ROOT, "controller/src/main.ts")], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout?.pipe(out);
  proc.stderr?.pipe(out);
  const exited = new Promise<number | string>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")));
  return {
    proc,
    exited,
    logFile,
    async kill(signal = "SIGKILL") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

export { separationJobName };
