// The local stack is the real thing: these tests drive the real Job controller, scheduler,
// garbage collector, JetStream file store and S3 signatures through it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import * as k8s from "@kubernetes/client-node";
import * as Minio from "minio";
import { AckPolicy, connect, StringCodec } from "nats";
import { type Stack, startStack } from "../src/stack/index.ts";

let stack: Stack;
let batch: k8s.BatchV1Api;
let core: k8s.CoreV1Api;
let seq = 0;

before(async () => {
  stack = await startStack({ gpus: 1, images: { "local/sh": { entrypoint: ["/bin/sh", "-c", "exit 0"], commands: { sh: ["/bin/sh"] } } } });
  const kc = stack.kube?.kc as k8s.KubeConfig;
  batch = kc.makeApiClient(k8s.BatchV1Api);
  core = kc.makeApiClient(k8s.CoreV1Api);
});
after(async () => stack?.stop());

async function namespace(): Promise<string> {
  const name = `t${++seq}-${Date.now().toString(36)}`;
  await core.createNamespace({ body: { metadata: { name } } });
  return name;
}

function job(name: string, script: string, extra: Partial<k8s.V1JobSpec> = {}, gpu = 0): k8s.V1Job {
  return {
    metadata: { name },
    spec: {
      backoffLimit: 0,
      ...extra,
      template: {
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          containers: [
            { name: "main", image: "local/sh:1", command: ["sh", "-c", script], resources: gpu ? { limits: { "nvidia.com/gpu": String(gpu) } } : {} },
          ],
        },
      },
    },
  };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const finished = (ns: string, name: string) =>
  until(`job ${name} to finish`, async () => {
    const j = await batch.readNamespacedJob({ name, namespace: ns });
    return j.status?.conditions?.find((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True") ? j : undefined;
  });

describe("kubernetes", () => {
  test("a Job whose container exits 0 completes through the real Job controller", async () => {
    const ns = await namespace();
    await batch.createNamespacedJob({ namespace: ns, body: job("ok", "echo hello; exit 0") });
    const j = await finished(ns, "ok");
    assert.equal(j.status?.succeeded, 1);
    assert.ok(j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True"));
  });

  test("an exit code listed as FailJob fails the Job at once; a plain failure is retried up to backoffLimit", async () => {
    const ns = await namespace();
    const podFailurePolicy: k8s.V1PodFailurePolicy = {
      rules: [
        { action: "FailJob", onExitCodes: { containerName: "main", operator: "In", values: [10] } },
        { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
      ],
    };
    await batch.createNamespacedJob({
      namespace: ns,
      body: job("bad-input", "echo undecodable > $TERMINATION_LOG; exit 10", { backoffLimit: 3, podFailurePolicy }),
    });
    await batch.createNamespacedJob({ namespace: ns, body: job("flaky", "exit 1", { backoffLimit: 1, podFailurePolicy }) });
    const bad = await finished(ns, "bad-input");
    assert.equal(bad.status?.failed, 1, "no retry after a FailJob exit code");
    assert.equal(bad.status?.conditions?.find((c) => c.type === "Failed")?.reason, "PodFailurePolicy");
    const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: "job-name=bad-input" });
    assert.equal(pods.items[0]?.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 10);
    assert.equal(pods.items[0]?.status?.containerStatuses?.[0]?.state?.terminated?.message?.trim(), "undecodable");
    const flaky = await finished(ns, "flaky");
    assert.equal(flaky.status?.failed, 2, "one try plus backoffLimit=1 retry");
    assert.equal(flaky.status?.conditions?.find((c) => c.type === "Failed")?.reason, "BackoffLimitExceeded");
  });

  test("with one GPU, a second GPU Job stays Pending as Unschedulable until the first finishes", async () => {
    const ns = await namespace();
    await batch.createNamespacedJob({ namespace: ns, body: job("first", "sleep 3", {}, 1) });
    await until("first pod running", async () => {
      const p = await core.listNamespacedPod({ namespace: ns, labelSelector: "job-name=first" });
      return p.items[0]?.status?.phase === "Running" ? true : undefined;
    });
    await batch.createNamespacedJob({ namespace: ns, body: job("second", "exit 0", {}, 1) });
    const waiting = await until("second pod unschedulable", async () => {
      const p = await core.listNamespacedPod({ namespace: ns, labelSelector: "job-name=second" });
      const c = p.items[0]?.status?.conditions?.find((x) => x.type === "PodScheduled");
      return c?.status === "False" ? c : undefined;
    });
    assert.equal(waiting.reason, "Unschedulable");
    assert.match(waiting.message ?? "", /Insufficient nvidia\.com\/gpu/);
    const second = await finished(ns, "second");
    const first = await batch.readNamespacedJob({ name: "first", namespace: ns });
    assert.equal(second.status?.succeeded, 1);
    assert.ok(new Date(second.status?.startTime as Date) >= new Date(first.status?.startTime as Date));
    assert.ok(first.status?.completionTime && new Date(first.status.completionTime) <= new Date(second.status?.completionTime as Date));
  });

  test("a container whose Secret cannot be read waits as CreateContainerConfigError and starts once it can, as a kubelet retries it", async () => {
    // the same path as a pod started while the API server restarts: its envFrom read fails, and the
    // pod must still run once the read succeeds
    const ns = await namespace();
    const body = job("late-secret", 'test "$GREETING" = hello');
    const container = body.spec?.template.spec?.containers[0] as k8s.V1Container;
    container.envFrom = [{ secretRef: { name: "late" } }];
    await batch.createNamespacedJob({ namespace: ns, body });
    await until("the container to wait for its Secret", async () => {
      const p = await core.listNamespacedPod({ namespace: ns, labelSelector: "job-name=late-secret" });
      return p.items[0]?.status?.containerStatuses?.[0]?.state?.waiting?.reason === "CreateContainerConfigError" ? true : undefined;
    });
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: "late" }, stringData: { GREETING: "hello" } } });
    const j = await finished(ns, "late-secret");
    assert.equal(j.status?.succeeded, 1, "the container started with the Secret's value and exited 0");
  });

  test("deleting an owner removes the Jobs it owns (garbage collector)", async () => {
    const ns = await namespace();
    const owner = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "owner" } } });
    const owned = job("owned", "sleep 30");
    owned.metadata = {
      name: "owned",
      ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata?.uid as string, controller: true }],
    };
    await batch.createNamespacedJob({ namespace: ns, body: owned });
    await until("owned pod running", async () => ((await core.listNamespacedPod({ namespace: ns })).items[0]?.status?.phase === "Running" ? true : undefined));
    await core.deleteNamespacedConfigMap({ name: "owner", namespace: ns });
    await until("owned job gone", async () => {
      try {
        await batch.readNamespacedJob({ name: "owned", namespace: ns });
        return undefined;
      } catch (err) {
        return (err as { code?: number }).code === 404 ? true : undefined;
      }
    });
    await until("owned pods gone", async () => ((await core.listNamespacedPod({ namespace: ns })).items.length === 0 ? true : undefined));
  });
});

describe("nats", () => {
  test("JetStream publish/consume with acks survives a NATS restart with the file store", async () => {
    const nats = stack.nats as NonNullable<Stack["nats"]>;
    const sc = StringCodec();
    let nc = await connect(nats.connectOptions("operator"));
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: "SURVIVE", subjects: ["survive.>"], storage: "file" as never });
    await jsm.consumers.add("SURVIVE", { durable_name: "worker", ack_policy: AckPolicy.Explicit });
    const js = nc.jetstream();
    for (let i = 0; i < 5; i++) await js.publish("survive.msg", sc.encode(`m${i}`), { msgID: `id-${i}` });
    let consumer = await js.consumers.get("SURVIVE", "worker");
    const first = await consumer.next({ expires: 10_000 });
    assert.equal(first && sc.decode(first.data), "m0");
    await first?.ackAck();
    await nc.close();

    await nats.crash();
    await nats.start();

    nc = await connect(nats.connectOptions("operator"));
    consumer = await nc.jetstream().consumers.get("SURVIVE", "worker");
    const rest: string[] = [];
    for (let i = 0; i < 4; i++) {
      const m = await consumer.next({ expires: 10_000 });
      if (m) {
        rest.push(sc.decode(m.data));
        await m.ackAck();
      }
    }
    assert.deepEqual(rest, ["m1", "m2", "m3", "m4"], "acked message not redelivered, unacked ones kept");
    await nc.close();
  });
});

describe("s3", () => {
  test("an object written with a presigned PUT reads back with a presigned GET; an expired URL is refused", async () => {
    const s3 = stack.s3 as NonNullable<Stack["s3"]>;
    const u = new URL(s3.endpoint);
    const client = new Minio.Client({
      endPoint: u.hostname,
      port: Number(u.port),
      useSSL: false,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      region: s3.region,
    });
    await client.makeBucket("presign", s3.region);
    const put = await client.presignedPutObject("presign", "a/b.txt", 60);
    assert.equal((await fetch(put, { method: "PUT", body: "hello presigned" })).status, 200);
    const get = await client.presignedGetObject("presign", "a/b.txt", 60);
    const res = await fetch(get);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello presigned");
    const tampered = new URL(get);
    tampered.pathname = "/presign/a/other.txt";
    assert.equal((await fetch(tampered)).status, 403, "signature covers the key");
    const short = await client.presignedGetObject("presign", "a/b.txt", 1);
    await sleep(2100);
    const expired = await fetch(short);
    assert.equal(expired.status, 403);
    assert.match(await expired.text(), /expired/i);
  });
});
