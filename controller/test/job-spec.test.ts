// What the separation pod may do, and the configuration that shapes it.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BAD_INPUT_EXIT_CODES } from "@unmix/api/exit-codes";
import { ConfigError } from "@unmix/core/config";
import { loadControllerConfig } from "../src/config.ts";
import { buildJob, buildJobSecret } from "../src/separation/job-spec.ts";
import { newSj } from "./fixtures.ts";

const baseEnv = {
  S3_ENDPOINT: "http://minio:9000",
  S3_BUCKET: "unmix",
  S3_ACCESS_KEY: "a",
  S3_SECRET_KEY: "b",
  WHATSAPP_ACCESS_TOKEN: "token",
  JOB_IMAGE: "ghcr.io/unmix/job:1.0",
};

// biome-ignore lint/suspicious/noExplicitAny: a JSON document walked in assertions
type Json = any;

describe("configuration", () => {
  test("defaults follow the brief: 15/10/2 s lease, 24 h cache, 7 days retention, GPU toleration", () => {
    const c = loadControllerConfig(baseEnv);
    assert.deepEqual([c.leaderElection.leaseDurationMs, c.leaderElection.renewDeadlineMs, c.leaderElection.retryPeriodMs], [15_000, 10_000, 2_000]);
    assert.equal(c.gc.cacheTtlMs, 24 * 3600_000);
    assert.equal(c.gc.retentionMs, 7 * 24 * 3600_000);
    assert.deepEqual(c.flow.maxAges, { fetchingMs: 1800_000, separatingMs: 3600_000, replyingMs: 6 * 3600_000 });
    assert.equal(c.gc.unfinishedMaxAgeMs, 24 * 3600_000);
    assert.deepEqual(c.job.tolerations, [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    assert.equal(c.whatsapp.baseUrl, "https://graph.facebook.com");
    assert.equal(c.flow.perUserMaxActiveJobs, 2, "one sender holds at most 2 GPUs unless configured");
  });
  test("a bad variable is named in the error", () => {
    const bad = (env: Record<string, string>, name: RegExp) =>
      assert.throws(
        () => loadControllerConfig({ ...baseEnv, ...env }),
        (e: unknown) => e instanceof ConfigError && e.problems.some((p) => name.test(p)),
      );
    bad({ JOB_TOLERATIONS: "[{" }, /^JOB_TOLERATIONS is invalid: not valid JSON/);
    bad({ JOB_NODE_SELECTOR: '{"a": 1}' }, /^JOB_NODE_SELECTOR/);
    bad({ JOB_CPU_REQUEST: "lots" }, /^JOB_CPU_REQUEST is invalid/);
    bad({ PER_USER_MAX_ACTIVE_JOBS: "-1" }, /^PER_USER_MAX_ACTIVE_JOBS is invalid/);
    bad({ WHATSAPP_API_VERSION: "24" }, /^WHATSAPP_API_VERSION is invalid/);
    bad({ RENEW_DEADLINE_SECONDS: "20" }, /^RENEW_DEADLINE_SECONDS/);
    bad({ JOB_PENDING_DEADLINE_SECONDS: "900" }, /^JOB_PENDING_DEADLINE_SECONDS is invalid: must be shorter than JOB_ACTIVE_DEADLINE_SECONDS/);
    bad({ CACHE_TTL_SECONDS: "86401" }, /^CACHE_TTL_SECONDS is invalid: at most 86400 \(24 h\)/);
    bad({ MAX_AGE_UNFINISHED_SECONDS: "90000" }, /^MAX_AGE_UNFINISHED_SECONDS is invalid: at most 86400/);
    bad({ MAX_AGE_REPLYING_SECONDS: "86000" }, /^MAX_AGE_REPLYING_SECONDS is invalid: at most 82800 \(23 h\): WhatsApp/);
    bad({ MAX_AGE_SEPARATING_SECONDS: "1200" }, /^MAX_AGE_SEPARATING_SECONDS is invalid: must be longer than MAX_AGE_FETCHING_SECONDS/);
    bad(
      { JOB_ACTIVE_DEADLINE_SECONDS: "3000", MAX_AGE_SEPARATING_SECONDS: "3600" },
      /^MAX_AGE_SEPARATING_SECONDS is invalid: must be longer than FETCH_DEADLINE_SECONDS \+ JOB_ACTIVE_DEADLINE_SECONDS/,
    );
    bad({ MAX_AGE_FETCHING_SECONDS: "300" }, /^MAX_AGE_FETCHING_SECONDS is invalid: must be longer than FETCH_DEADLINE_SECONDS/);
    assert.throws(
      () => loadControllerConfig({ ...baseEnv, JOB_IMAGE: undefined as unknown as string }),
      (e: unknown) => e instanceof ConfigError && e.problems.some((p) => /^JOB_IMAGE is not set/.test(p)),
    );
  });
});

describe("the separation Job", () => {
  const config = loadControllerConfig({
    ...baseEnv,
    JOB_RUNTIME_CLASS: "nvidia",
    JOB_PRIORITY_CLASS: "unmix-interactive",
    JOB_NODE_SELECTOR: '{"nvidia.com/gpu.product":"NVIDIA-L4"}',
    KUEUE_QUEUE_NAME: "gpu-queue",
    KUEUE_PRIORITY_CLASS: "interactive",
    JOB_EXTRA_ENV: '{"DEMUCS_SEGMENT":"7.8"}',
  });
  const sj = newSj();
  const j: Json = buildJob(sj, config.job, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  const urls: Json = buildJobSecret(sj, { input: "http://s3/in?sig", output: "http://s3/out?sig", manifest: "http://s3/m?sig" });
  const pod = j.spec.template.spec;
  const container = pod.containers[0];
  const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));

  test("named after its SeparationJob and owned by it", () => {
    assert.equal(j.metadata.name, sj.metadata.name);
    assert.deepEqual(j.metadata.ownerReferences, [
      { apiVersion: "unmix.dev/v1alpha1", kind: "SeparationJob", name: sj.metadata.name, uid: "uid-1", controller: true },
    ]);
  });
  test("a GPU in limits, tolerations, nodeSelector, runtime and priority class from configuration", () => {
    assert.equal(container.resources.limits["nvidia.com/gpu"], "1");
    assert.deepEqual(pod.tolerations, [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    assert.deepEqual(pod.nodeSelector, { "nvidia.com/gpu.product": "NVIDIA-L4" });
    assert.equal(pod.runtimeClassName, "nvidia");
    assert.equal(pod.priorityClassName, "unmix-interactive");
    assert.equal(container.image, "ghcr.io/unmix/job:1.0");
    assert.equal(container.imagePullPolicy, "IfNotPresent");
  });
  test("a CPU limit as well as a memory limit: decoding a hostile video cannot take the node's cores", () => {
    assert.deepEqual([container.resources.limits.cpu, container.resources.limits.memory], ["4", "12Gi"]);
    assert.equal(loadControllerConfig({ ...baseEnv, JOB_CPU_LIMIT: "1500m" }).job.cpuLimit, "1500m");
  });
  test("no credentials: presigned URLs only, no service-account token, non-root, read-only, no capabilities", () => {
    assert.equal(pod.automountServiceAccountToken, false);
    assert.deepEqual(container.envFrom, [{ secretRef: { name: urls.metadata.name } }]);
    assert.deepEqual(urls.stringData, { INPUT_URL: "http://s3/in?sig", OUTPUT_URL: "http://s3/out?sig", MANIFEST_URL: "http://s3/m?sig" });
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext.capabilities, { drop: ["ALL"] });
    assert.ok(!JSON.stringify(j).includes("unmix-test-secret") && !JSON.stringify(j).includes("token"), "no secret anywhere");
    assert.deepEqual(pod.volumes, [{ name: "work", emptyDir: { sizeLimit: "4Gi" } }]);
    assert.equal(env.WORK_DIR, "/work");
  });
  test("P2: the presigned URLs are in a Secret owned by the SeparationJob, not in the Job (which the `view` role reads)", () => {
    assert.ok(!JSON.stringify(j).includes("http://s3/"), "no URL in the Job or its pod template");
    assert.deepEqual([env.INPUT_URL, env.OUTPUT_URL, env.MANIFEST_URL], [undefined, undefined, undefined]);
    assert.equal(urls.kind, "Secret");
    assert.equal(urls.metadata.name, `${sj.metadata.name}-urls`);
    assert.deepEqual(urls.metadata.ownerReferences, [{ apiVersion: "unmix.dev/v1alpha1", kind: "SeparationJob", name: sj.metadata.name, uid: "uid-1" }]);
  });
  test("fails fast on bad input, ignores disruptions; retries, deadline, TTL, no double GPU", () => {
    assert.deepEqual(j.spec.podFailurePolicy.rules, [
      { action: "FailJob", onExitCodes: { containerName: "separate", operator: "In", values: [...BAD_INPUT_EXIT_CODES] } },
      { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
    ]);
    assert.equal(pod.restartPolicy, "Never");
    assert.equal(j.spec.backoffLimit, 2);
    assert.equal(j.spec.activeDeadlineSeconds, 900);
    assert.equal(j.spec.ttlSecondsAfterFinished, 3600);
    assert.equal(j.spec.podReplacementPolicy, "Failed");
  });
  test("the Kueue queue and WorkloadPriorityClass labels, and suspend left to Kueue", () => {
    assert.equal(j.metadata.labels["kueue.x-k8s.io/queue-name"], "gpu-queue");
    assert.equal(j.metadata.labels["kueue.x-k8s.io/priority-class"], "interactive");
    assert.equal("suspend" in j.spec, false);
  });
  test("no Kueue labels without a Kueue queue (a priority class alone would mean nothing)", () => {
    const plain: Json = buildJob(sj, loadControllerConfig({ ...baseEnv, KUEUE_PRIORITY_CLASS: "interactive" }).job, undefined);
    assert.deepEqual(
      Object.keys(plain.metadata.labels).filter((l) => l.startsWith("kueue.x-k8s.io/")),
      [],
    );
  });
  test("the job parameters and the message's traceparent", () => {
    assert.equal(env.TRACEPARENT, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert.deepEqual([env.INPUT_KIND, env.OUTPUT_FORMAT, env.MODEL_NAME, env.DEMUCS_SEGMENT], ["audio", "ogg-opus", "htdemucs", "7.8"]);
  });
});
