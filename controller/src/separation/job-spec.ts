// The batch/v1 Job that runs the separation for one SeparationJob, built by a pure function from the
// SeparationJob and the configuration, so what the pod may do is all in one place; the Secret with
// its presigned URLs (the pod reads them with envFrom: anyone with the `view` role reads Jobs and
// pods, not Secrets); and the object-store keys the job writes to. The Job is named like its
// SeparationJob.
import { BAD_INPUT_EXIT_CODES } from "@unmix/api/exit-codes";
import { API_VERSION, KIND, type SeparationJob } from "@unmix/api/separationjob";
import type { JobSettings } from "../config.ts";
import type { JobManifest, SecretManifest } from "../framework/kube/objects.ts";

/** Label on the Job and its pods naming their SeparationJob. */
export const SJ_LABEL = "unmix.dev/separationjob";
export const MANAGED_BY = "unmix-controller";
export const CONTAINER = "separate";
export const WORK_DIR = "/work";
const KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name";
const KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class";

/** Where the job writes, under the bucket: deleted once the reply is out. */
export const workPrefix = (sjName: string) => `work/${sjName}/`;
export const outputKey = (sjName: string) => `${workPrefix(sjName)}output`;
export const manifestKey = (sjName: string) => `${workPrefix(sjName)}manifest.json`;

export interface PresignedUrls {
  input: string;
  output: string;
  manifest: string;
}

/** The Secret holding a Job's presigned URLs, owned by the SeparationJob and deleted with its input. */
export const jobSecretName = (sjName: string) => `${sjName}-urls`;

export function buildJobSecret(sj: SeparationJob, urls: PresignedUrls): SecretManifest {
  const name = sj.metadata.name;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: jobSecretName(name),
      labels: { "app.kubernetes.io/managed-by": MANAGED_BY, [SJ_LABEL]: name },
      ownerReferences: [{ apiVersion: API_VERSION, kind: KIND, name, uid: sj.metadata.uid ?? "" }],
    },
    type: "Opaque",
    stringData: { INPUT_URL: urls.input, OUTPUT_URL: urls.output, MANIFEST_URL: urls.manifest },
  };
}

const MIME_BY_FORMAT = { "ogg-opus": "audio/ogg", mp3: "audio/mpeg", m4a: "audio/mp4", mp4: "video/mp4" } as const;
export const mimeTypeOfFormat = (format: keyof typeof MIME_BY_FORMAT) => MIME_BY_FORMAT[format];

export function buildJob(sj: SeparationJob, s: JobSettings, traceparent: string | undefined): JobManifest {
  const name = sj.metadata.name;
  const labels: Record<string, string> = {
    "app.kubernetes.io/name": "unmix-job",
    "app.kubernetes.io/component": "separation",
    "app.kubernetes.io/managed-by": MANAGED_BY,
    [SJ_LABEL]: name,
  };
  const env: Record<string, string> = {
    ...s.extraEnv,
    INPUT_KIND: sj.spec.media.kind,
    INPUT_MIME_TYPE: sj.spec.media.mimeType,
    OUTPUT_FORMAT: sj.spec.output.format,
    MODEL_NAME: s.modelName,
    DEVICE: s.gpuCount > 0 ? s.device : "cpu",
    MAX_DURATION_SECONDS: String(s.maxDurationSeconds),
    MAX_INPUT_BYTES: String(s.maxInputBytes),
    WORK_DIR,
    TMPDIR: WORK_DIR,
    HOME: WORK_DIR,
    ...(traceparent ? { TRACEPARENT: traceparent } : {}),
  };
  const gpu = s.gpuCount > 0 ? { [s.gpuResource]: String(s.gpuCount) } : {};
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      labels: {
        ...labels,
        ...(s.kueueQueueName ? { [KUEUE_QUEUE_LABEL]: s.kueueQueueName } : {}),
        ...(s.kueueQueueName && s.kueuePriorityClass ? { [KUEUE_PRIORITY_LABEL]: s.kueuePriorityClass } : {}),
      },
      annotations: traceparent ? { "unmix.dev/traceparent": traceparent } : {},
      ownerReferences: [{ apiVersion: API_VERSION, kind: KIND, name, uid: sj.metadata.uid ?? "", controller: true }],
    },
    spec: {
      // no `suspend` at all: Kueue's webhook sets it to true and unsuspends on admission
      backoffLimit: s.backoffLimit,
      activeDeadlineSeconds: s.activeDeadlineSeconds,
      ttlSecondsAfterFinished: s.ttlSecondsAfterFinished,
      // no second pod (and no second GPU) until the first has fully terminated
      podReplacementPolicy: "Failed",
      podFailurePolicy: {
        rules: [
          // bad input cannot get better by retrying: fail the Job at once
          { action: "FailJob", onExitCodes: { containerName: CONTAINER, operator: "In", values: [...BAD_INPUT_EXIT_CODES] } },
          // preemption, eviction, node drain: not the job's fault, do not count against backoffLimit
          { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
        ],
      },
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 30,
          ...(s.runtimeClassName ? { runtimeClassName: s.runtimeClassName } : {}),
          ...(s.priorityClassName ? { priorityClassName: s.priorityClassName } : {}),
          ...(Object.keys(s.nodeSelector).length ? { nodeSelector: s.nodeSelector } : {}),
          ...(s.tolerations.length ? { tolerations: s.tolerations } : {}),
          securityContext: {
            runAsNonRoot: true,
            runAsUser: s.runAsUser,
            runAsGroup: s.runAsUser,
            fsGroup: s.runAsUser,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: CONTAINER,
              image: s.image,
              imagePullPolicy: s.imagePullPolicy,
              envFrom: [{ secretRef: { name: jobSecretName(name) } }],
              env: Object.entries(env).map(([n, value]) => ({ name: n, value })),
              resources: {
                requests: { cpu: s.cpuRequest, memory: s.memoryRequest, ...gpu },
                limits: { cpu: s.cpuLimit, memory: s.memoryLimit, ...gpu },
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                capabilities: { drop: ["ALL"] },
              },
              volumeMounts: [{ name: "work", mountPath: WORK_DIR }],
              terminationMessagePolicy: "FallbackToLogsOnError",
            },
          ],
          volumes: [{ name: "work", emptyDir: { sizeLimit: s.workDirSizeLimit } }],
        },
      },
    },
  };
}
