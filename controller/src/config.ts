// The controller's configuration: environment variables validated with zod at start-up (a bad or
// missing variable stops the process with a message naming it), turned into typed settings.

import { LIMITS } from "@unmix/api/limits";
import { MODEL_NAMES } from "@unmix/api/models";
import { env, parseConfig } from "@unmix/core/config";
import { NatsConfig } from "@unmix/core/nats-config";
import { ObjectStoreConfig } from "@unmix/core/object-store-config";
import { CACHE_TTL_MAX_SECONDS, CACHE_TTL_TOO_LONG } from "@unmix/core/result-cache";
import { WhatsAppConfig } from "@unmix/core/whatsapp";
import { z } from "zod";

/** A JSON value in one variable (Helm renders maps and lists with toJson). */
function json<T extends z.ZodType>(schema: T, fallback: z.input<T>) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === "") return fallback;
      try {
        return JSON.parse(raw) as unknown;
      } catch (err) {
        ctx.addIssue({ code: "custom", message: `not valid JSON (${(err as Error).message})` });
        return z.NEVER;
      }
    })
    .pipe(schema);
}

const quantity = (def: string) =>
  z
    .string()
    .regex(/^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/, "a Kubernetes quantity such as 500m, 4Gi")
    .default(def);

const Toleration = z
  .object({
    key: z.string().optional(),
    operator: z.enum(["Exists", "Equal"]).optional(),
    value: z.string().optional(),
    effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
    tolerationSeconds: z.number().int().optional(),
  })
  .strict();

const positiveSeconds = (def: number) => z.coerce.number().positive().default(def);

const ControllerEnv = z.object({
  ...ObjectStoreConfig.shape,
  ...WhatsAppConfig.shape,
  // the audit trail (P5): its NATS user may publish the controller's audit subjects only
  NATS_URL: NatsConfig.shape.NATS_URL,
  NATS_CREDS_FILE: NatsConfig.shape.NATS_CREDS_FILE,
  NATS_USER: NatsConfig.shape.NATS_USER,
  NATS_PASSWORD: NatsConfig.shape.NATS_PASSWORD,
  NATS_INBOX_PREFIX: NatsConfig.shape.NATS_INBOX_PREFIX,
  /** Namespace whose SeparationJobs this controller reconciles (and where Jobs, Events, the Lease live). */
  KUBE_NAMESPACE: env.namespace(),

  // ── the separation Job ──
  JOB_IMAGE: z.string().min(1, "the job-image reference, e.g. ghcr.io/unmix/job@sha256:…"),
  JOB_IMAGE_PULL_POLICY: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent"),
  JOB_GPU_RESOURCE: z.string().min(1).default("nvidia.com/gpu"),
  /** 0 runs on CPU (no GPU limit; DEVICE=cpu). */
  JOB_GPU_COUNT: env.int(1),
  JOB_RUNTIME_CLASS: z.string().optional(),
  JOB_PRIORITY_CLASS: z.string().optional(),
  JOB_NODE_SELECTOR: json(z.record(z.string(), z.string()), {}),
  JOB_TOLERATIONS: json(z.array(Toleration), [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]),
  JOB_CPU_REQUEST: quantity("2"),
  /** A hard CPU bound: decoding and re-encoding hostile video cannot take the node's cores. */
  JOB_CPU_LIMIT: quantity("4"),
  JOB_MEMORY_REQUEST: quantity("6Gi"),
  JOB_MEMORY_LIMIT: quantity("12Gi"),
  JOB_WORK_DIR_SIZE_LIMIT: quantity("4Gi"),
  JOB_RUN_AS_USER: env.int(65532, 1),
  JOB_BACKOFF_LIMIT: env.int(2),
  JOB_ACTIVE_DEADLINE_SECONDS: env.int(900, 1),
  JOB_TTL_SECONDS_AFTER_FINISHED: env.int(3600),
  /** Past this long without a pod scheduled, the job fails as Busy and the user is told. */
  JOB_PENDING_DEADLINE_SECONDS: positiveSeconds(600),
  /**
   * Separation Jobs one sender may have at once, not finished (waiting for a GPU or running); more
   * wait as WaitingForUserQuota, so one user's burst of files cannot hold every GPU. 0: no limit.
   */
  PER_USER_MAX_ACTIVE_JOBS: env.int(2),
  /** Kueue LocalQueue name; the Job gets kueue.x-k8s.io/queue-name and Kueue manages suspend. */
  KUEUE_QUEUE_NAME: z.string().optional(),
  /** Kueue WorkloadPriorityClass of the Jobs (label kueue.x-k8s.io/priority-class): their rank in the queue and for preemption. */
  KUEUE_PRIORITY_CLASS: z.string().optional(),
  /** Extra environment for the job container (DEMUCS_SEGMENT, MODEL_REPO, …) as a JSON object. */
  JOB_EXTRA_ENV: json(z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()), {}),
  JOB_DEVICE: z.enum(["auto", "cpu", "cuda"]).default("auto"),
  /** The separation model the jobs run (models.ts): htdemucs on GPUs, dfn3 for CPU-only clusters. */
  MODEL_NAME: z.enum(MODEL_NAMES).default("htdemucs"),
  MAX_DURATION_SECONDS: positiveSeconds(LIMITS.defaultMaxDurationSeconds),
  MAX_INPUT_BYTES: env.int(LIMITS.defaultMaxInputBytes, 1),

  // ── timing of the flow ──
  /** Retryable failures to fetch the media from WhatsApp stop being retried this long after the SeparationJob was created. */
  FETCH_DEADLINE_SECONDS: positiveSeconds(600),
  /** How long a reply whose outcome a crash left unknown waits for a status-webhook receipt before it is sent once more. */
  REPLY_CONFIRM_SECONDS: positiveSeconds(300),
  /** A Graph API call with no answer within this long is abandoned (a send's outcome is then settled by its receipt). */
  WHATSAPP_TIMEOUT_SECONDS: positiveSeconds(30),

  // ── the most a message may take, per stage (age since the SeparationJob was created) ──
  /** Not fetched by then (e.g. WhatsApp refuses our token): fails, with a reply where one can be sent. */
  MAX_AGE_FETCHING_SECONDS: positiveSeconds(1800),
  /** No result by then (the Job could not be created, scheduled or finished): fails likewise. */
  MAX_AGE_SEPARATING_SECONDS: positiveSeconds(3600),
  /** A result or failure not sent by then: the reply is given up (WhatsApp's 24-hour window closes anyway). */
  MAX_AGE_REPLYING_SECONDS: positiveSeconds(6 * 3600).pipe(
    z.number().max(23 * 3600, "at most 82800 (23 h): WhatsApp accepts no free-form reply 24 h after the user's message"),
  ),
  /** Still unfinished by then, whatever the stage (e.g. the object store refusing the cleanup): the garbage collector deletes it and what it stored. */
  MAX_AGE_UNFINISHED_SECONDS: positiveSeconds(24 * 3600).pipe(z.number().max(24 * 3600, "at most 86400 (24 h): no input is kept longer")),

  // ── work queue and informers ──
  RECONCILE_CONCURRENCY: env.int(8, 1),
  RECONCILE_QPS: z.coerce.number().positive().default(100),
  RECONCILE_BURST: env.int(200, 1),
  RETRY_BASE_MS: env.int(500, 1),
  RETRY_MAX_SECONDS: positiveSeconds(300),
  RESYNC_SECONDS: positiveSeconds(300),
  RELIST_SECONDS: positiveSeconds(600),
  /** A watch that delivers nothing (not even a bookmark) for this long is restarted. */
  WATCH_STALL_SECONDS: positiveSeconds(90),

  // ── leader election ──
  LEADER_ELECT: env.bool(true),
  LEASE_NAME: env.dnsLabel().default("unmix-controller"),
  LEASE_DURATION_SECONDS: positiveSeconds(15),
  RENEW_DEADLINE_SECONDS: positiveSeconds(10),
  RETRY_PERIOD_SECONDS: positiveSeconds(2),
  /** This replica's identity in the Lease (the chart sets the pod name). */
  POD_NAME: z.string().optional(),

  // ── garbage collection ──
  /** The data policy promises deletion after 24 hours: a longer TTL is refused. */
  CACHE_TTL_SECONDS: positiveSeconds(CACHE_TTL_MAX_SECONDS).pipe(z.number().max(CACHE_TTL_MAX_SECONDS, CACHE_TTL_TOO_LONG)),
  ORPHAN_GRACE_SECONDS: positiveSeconds(3600),
  SJ_RETENTION_SECONDS: positiveSeconds(7 * 24 * 3600),
  GC_INTERVAL_SECONDS: positiveSeconds(300),
  /** SeparationJobs per list request of the garbage collector (its memory holds one page). */
  GC_PAGE_SIZE: env.int(500, 1),

  // ── HTTP (metrics, health) ──
  HTTP_HOST: z.string().default("0.0.0.0"),
  HTTP_PORT: env.port(8080),
});

export const ControllerConfig = ControllerEnv.superRefine((c, ctx) => {
  if (c.RENEW_DEADLINE_SECONDS >= c.LEASE_DURATION_SECONDS)
    ctx.addIssue({ code: "custom", path: ["RENEW_DEADLINE_SECONDS"], message: "must be shorter than LEASE_DURATION_SECONDS" });
  if (c.JOB_PENDING_DEADLINE_SECONDS >= c.JOB_ACTIVE_DEADLINE_SECONDS)
    ctx.addIssue({
      code: "custom",
      path: ["JOB_PENDING_DEADLINE_SECONDS"],
      message: "must be shorter than JOB_ACTIVE_DEADLINE_SECONDS, which counts the time a Job waits for a GPU too",
    });
  const stages = [
    ["FETCH_DEADLINE_SECONDS", c.FETCH_DEADLINE_SECONDS],
    ["MAX_AGE_FETCHING_SECONDS", c.MAX_AGE_FETCHING_SECONDS],
    ["MAX_AGE_SEPARATING_SECONDS", c.MAX_AGE_SEPARATING_SECONDS],
    ["MAX_AGE_REPLYING_SECONDS", c.MAX_AGE_REPLYING_SECONDS],
    ["MAX_AGE_UNFINISHED_SECONDS", c.MAX_AGE_UNFINISHED_SECONDS],
  ] as const;
  for (let i = 1; i < stages.length; i++) {
    const [name, value] = stages[i] as (typeof stages)[number];
    const [before, min] = stages[i - 1] as (typeof stages)[number];
    if (value <= min) ctx.addIssue({ code: "custom", path: [name], message: `must be longer than ${before} (${min})` });
  }
  if (c.MAX_AGE_SEPARATING_SECONDS <= c.FETCH_DEADLINE_SECONDS + c.JOB_ACTIVE_DEADLINE_SECONDS)
    ctx.addIssue({
      code: "custom",
      path: ["MAX_AGE_SEPARATING_SECONDS"],
      message: "must be longer than FETCH_DEADLINE_SECONDS + JOB_ACTIVE_DEADLINE_SECONDS, the time a message may take normally",
    });
  if (c.RETRY_PERIOD_SECONDS >= c.RENEW_DEADLINE_SECONDS)
    ctx.addIssue({ code: "custom", path: ["RETRY_PERIOD_SECONDS"], message: "must be shorter than RENEW_DEADLINE_SECONDS" });
}).transform((c) => ({
  namespace: c.KUBE_NAMESPACE,
  objectStore: ObjectStoreConfig.parse(c),
  whatsapp: {
    baseUrl: c.WHATSAPP_API_URL,
    version: c.WHATSAPP_API_VERSION,
    accessToken: c.WHATSAPP_ACCESS_TOKEN,
    mediaHosts: c.WHATSAPP_MEDIA_HOSTS,
    timeoutMs: c.WHATSAPP_TIMEOUT_SECONDS * 1000,
  },
  nats: {
    NATS_URL: c.NATS_URL,
    NATS_CREDS_FILE: c.NATS_CREDS_FILE,
    NATS_USER: c.NATS_USER,
    NATS_PASSWORD: c.NATS_PASSWORD,
    NATS_INBOX_PREFIX: c.NATS_INBOX_PREFIX,
  },
  job: {
    image: c.JOB_IMAGE,
    imagePullPolicy: c.JOB_IMAGE_PULL_POLICY,
    gpuResource: c.JOB_GPU_RESOURCE,
    gpuCount: c.JOB_GPU_COUNT,
    runtimeClassName: c.JOB_RUNTIME_CLASS,
    priorityClassName: c.JOB_PRIORITY_CLASS,
    nodeSelector: c.JOB_NODE_SELECTOR,
    tolerations: c.JOB_TOLERATIONS,
    cpuRequest: c.JOB_CPU_REQUEST,
    cpuLimit: c.JOB_CPU_LIMIT,
    memoryRequest: c.JOB_MEMORY_REQUEST,
    memoryLimit: c.JOB_MEMORY_LIMIT,
    workDirSizeLimit: c.JOB_WORK_DIR_SIZE_LIMIT,
    runAsUser: c.JOB_RUN_AS_USER,
    backoffLimit: c.JOB_BACKOFF_LIMIT,
    activeDeadlineSeconds: c.JOB_ACTIVE_DEADLINE_SECONDS,
    ttlSecondsAfterFinished: c.JOB_TTL_SECONDS_AFTER_FINISHED,
    kueueQueueName: c.KUEUE_QUEUE_NAME,
    kueuePriorityClass: c.KUEUE_PRIORITY_CLASS,
    extraEnv: c.JOB_EXTRA_ENV,
    device: c.JOB_DEVICE,
    modelName: c.MODEL_NAME,
    maxDurationSeconds: c.MAX_DURATION_SECONDS,
    maxInputBytes: c.MAX_INPUT_BYTES,
  },
  flow: {
    pendingDeadlineMs: c.JOB_PENDING_DEADLINE_SECONDS * 1000,
    perUserMaxActiveJobs: c.PER_USER_MAX_ACTIVE_JOBS,
    fetchDeadlineMs: c.FETCH_DEADLINE_SECONDS * 1000,
    replyConfirmMs: c.REPLY_CONFIRM_SECONDS * 1000,
    maxAges: {
      fetchingMs: c.MAX_AGE_FETCHING_SECONDS * 1000,
      separatingMs: c.MAX_AGE_SEPARATING_SECONDS * 1000,
      replyingMs: c.MAX_AGE_REPLYING_SECONDS * 1000,
    },
    maxInputBytes: c.MAX_INPUT_BYTES,
    maxDurationMinutes: Math.floor(c.MAX_DURATION_SECONDS / 60),
    maxInputMb: Math.round((c.MAX_INPUT_BYTES / 1024 / 1024) * 10) / 10,
    model: c.MODEL_NAME,
    /** Presigned URLs live as long as a Job may: waiting, running, and a margin (S3 caps them at 7 days). */
    presignSeconds: Math.min(7 * 24 * 3600, Math.ceil(c.JOB_PENDING_DEADLINE_SECONDS + c.JOB_ACTIVE_DEADLINE_SECONDS + 300)),
  },
  queue: {
    concurrency: c.RECONCILE_CONCURRENCY,
    qps: c.RECONCILE_QPS,
    burst: c.RECONCILE_BURST,
    baseDelayMs: c.RETRY_BASE_MS,
    maxDelayMs: c.RETRY_MAX_SECONDS * 1000,
  },
  informers: { resyncMs: c.RESYNC_SECONDS * 1000, relistMs: c.RELIST_SECONDS * 1000, stallMs: c.WATCH_STALL_SECONDS * 1000 },
  leaderElection: {
    enabled: c.LEADER_ELECT,
    leaseName: c.LEASE_NAME,
    leaseDurationMs: c.LEASE_DURATION_SECONDS * 1000,
    renewDeadlineMs: c.RENEW_DEADLINE_SECONDS * 1000,
    retryPeriodMs: c.RETRY_PERIOD_SECONDS * 1000,
    identity: c.POD_NAME,
  },
  gc: {
    cacheTtlMs: c.CACHE_TTL_SECONDS * 1000,
    orphanGraceMs: c.ORPHAN_GRACE_SECONDS * 1000,
    retentionMs: c.SJ_RETENTION_SECONDS * 1000,
    unfinishedMaxAgeMs: c.MAX_AGE_UNFINISHED_SECONDS * 1000,
    intervalMs: c.GC_INTERVAL_SECONDS * 1000,
    pageSize: c.GC_PAGE_SIZE,
  },
  http: { host: c.HTTP_HOST, port: c.HTTP_PORT },
}));
export type ControllerConfig = z.infer<typeof ControllerConfig>;
export type JobSettings = ControllerConfig["job"];
export type FlowSettings = ControllerConfig["flow"];

export const loadControllerConfig = (e: Record<string, string | undefined> = process.env): ControllerConfig => parseConfig(ControllerConfig, e);
