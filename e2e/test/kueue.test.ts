// The product with a real Kueue (its controller-manager, CRDs and webhooks on the local stack:
// e2e/src/stack/kueue.ts): a ClusterQueue with a quota of 1 nvidia.com/gpu (the node has 2, so Kueue,
// not the scheduler, is the limit) and a LocalQueue in the product's namespace, which the controller
// names on its Jobs (KUEUE_QUEUE_NAME) with a low WorkloadPriorityClass (KUEUE_PRIORITY_CLASS).
// - separation Jobs are admitted up to the quota; beyond it they wait suspended, and Kueue's own
//   reason is on the SeparationJob's conditions and Events (`kubectl describe sj`);
// - the pending deadline applies to a Job Kueue holds: a Busy failure reply, nothing left behind;
// - another team's higher-priority Job preempts a running separation: it is suspended, admitted
//   again once the GPU is free, and runs again; the user gets exactly one reply.
// - the chart's values that connect to this Kueue (job.kueue.queueName, job.kueue.priorityClass):
//   `helm template` and a server-side dry run with Kueue's CRDs and webhooks in place; the Job the
//   controller builds from the rendered config is taken and suspended by Kueue's webhook, and the
//   controller's account may list Workloads.
// The job pod is controller/test/standin-job.sh ("SLEEP=<s>" holds the GPU that long). Kueue is
// built from its Go module on first use (e2e/stack/install.sh kueue: about 6 CPU minutes, cached
// under .cache/bin), as promtool is for the observability tests; `make kueue` runs this file alone.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { findCondition } from "@unmix/api/conditions";
import { separationJobName } from "@unmix/api/separationjob";
import { replies } from "@unmix/core/replies";
import { parseAllDocuments } from "yaml";
import { type Product, ROOT, startProduct, until } from "../src/product.ts";
import { renderedJob } from "../src/rendered-chart.ts";
import { KUEUE_API_VERSION, KUEUE_GROUP } from "../src/stack/kueue.ts";
import { bin, versions } from "../src/stack/versions.ts";
import type { SentMessage } from "../src/whatsapp-sim/index.ts";

const QUEUE = "unmix-gpu";
const CLUSTER_QUEUE = "gpu";
const FLAVOR = "gpu";
const UNMIX_PRIORITY = "unmix-batch";
const URGENT_PRIORITY = "team-urgent";
const TEAM_NS = "team";
const TEAM_IMAGE = "example.com/team/train";
/** Short, so the deadline test waits seconds; the Job that holds the GPU sleeps longer than this. */
const PENDING_DEADLINE_S = 30;

let p: Product;
let custom: k8s.CustomObjectsApi;

const kueueObject = (plural: string, body: Record<string, unknown>, namespace?: string) =>
  namespace
    ? custom.createNamespacedCustomObject({ group: KUEUE_GROUP, version: KUEUE_API_VERSION, namespace, plural, body })
    : custom.createClusterCustomObject({ group: KUEUE_GROUP, version: KUEUE_API_VERSION, plural, body });
const kind = (k: string, name: string, spec: Record<string, unknown>, namespace?: string) => ({
  apiVersion: `${KUEUE_GROUP}/${KUEUE_API_VERSION}`,
  kind: k,
  metadata: { name, ...(namespace ? { namespace } : {}) },
  ...spec,
});

before(
  async () => {
    p = await startProduct({
      gpus: 2,
      kueue: true,
      jobImage: { entrypoint: ["/bin/sh", join(ROOT, "controller/test/standin-job.sh")] },
      images: { [TEAM_IMAGE]: { entrypoint: ["/bin/sh", "-c", "sleep 6"] } },
      controllerEnv: {
        KUEUE_QUEUE_NAME: QUEUE,
        KUEUE_PRIORITY_CLASS: UNMIX_PRIORITY,
        JOB_PENDING_DEADLINE_SECONDS: String(PENDING_DEADLINE_S),
        JOB_TTL_SECONDS_AFTER_FINISHED: "1",
        JOB_CPU_REQUEST: "10m",
        JOB_MEMORY_REQUEST: "16Mi",
        JOB_MEMORY_LIMIT: "256Mi",
      },
    });
    const kc = p.stack.kube?.kc as k8s.KubeConfig;
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
    await kueueObject("resourceflavors", kind("ResourceFlavor", FLAVOR, { spec: {} }));
    await kueueObject(
      "clusterqueues",
      kind("ClusterQueue", CLUSTER_QUEUE, {
        spec: {
          namespaceSelector: {},
          preemption: { withinClusterQueue: "LowerPriority" },
          resourceGroups: [
            {
              coveredResources: ["cpu", "memory", "nvidia.com/gpu"],
              flavors: [
                {
                  name: FLAVOR,
                  resources: [
                    { name: "cpu", nominalQuota: "8" },
                    { name: "memory", nominalQuota: "16Gi" },
                    { name: "nvidia.com/gpu", nominalQuota: 1 },
                  ],
                },
              ],
            },
          ],
        },
      }),
    );
    await p.core.createNamespace({ body: { metadata: { name: TEAM_NS } } });
    for (const ns of [p.namespace, TEAM_NS]) await kueueObject("localqueues", kind("LocalQueue", QUEUE, { spec: { clusterQueue: CLUSTER_QUEUE } }, ns), ns);
    await kueueObject("workloadpriorityclasses", kind("WorkloadPriorityClass", UNMIX_PRIORITY, { value: 10, description: "voice notes: preemptible" }));
    await kueueObject(
      "workloadpriorityclasses",
      kind("WorkloadPriorityClass", URGENT_PRIORITY, { value: 1000, description: "another team's urgent GPU work" }),
    );
    // the ClusterQueue is Active once Kueue has seen its flavor
    await until("the ClusterQueue to be active", async () => {
      const cq = (await custom.getClusterCustomObject({
        group: KUEUE_GROUP,
        version: KUEUE_API_VERSION,
        plural: "clusterqueues",
        name: CLUSTER_QUEUE,
      })) as Loose;
      return cq.status?.conditions?.some((c: Loose) => c.type === "Active" && c.status === "True") ? true : undefined;
    });
  },
  // the first run builds Kueue from its Go module
  { timeout: 1_800_000 },
);
after(async () => {
  await p?.stop();
});

// biome-ignore lint/suspicious/noExplicitAny: Kueue's objects are read field by field
type Loose = any;

let users = 0;
/** A voice note from a new user; `first` is the first line the stand-in job reads (SLEEP=<s>). */
async function send(tag: string, first = ""): Promise<string> {
  const n = String(++users).padStart(4, "0");
  const r = await p.sim.sendUserMessage({
    type: "audio",
    bytes: Buffer.from(`${first ? `${first}\n` : ""}kueue ${tag} ${n} ${Date.now()}`),
    mimeType: "audio/ogg; codecs=opus",
    voice: true,
    from: { waId: `4915551${n}7`, name: `Queue ${n}` },
  });
  assert.ok(
    r.deliveries.every((d) => d.status === 200),
    "the webhook took the message",
  );
  return r.id;
}

const repliesTo = (id: string): SentMessage[] => p.sim.sentMessages().filter((m) => m.type !== "reaction" && m.replyTo === id);

/** The Job of a message, once the controller made it. */
const jobOf = (id: string) =>
  until(`the Job of ${id}`, async () => {
    try {
      return await p.batch.readNamespacedJob({ name: separationJobName(id), namespace: p.namespace });
    } catch {
      return undefined;
    }
  });

/** Kueue's Workload of a Job (found by the job-uid label Kueue puts on it). */
async function workloadOf(job: k8s.V1Job, namespace = p.namespace): Promise<Loose | undefined> {
  const list = (await custom.listNamespacedCustomObject({
    group: KUEUE_GROUP,
    version: KUEUE_API_VERSION,
    namespace,
    plural: "workloads",
    labelSelector: `${KUEUE_GROUP}/job-uid=${job.metadata?.uid}`,
  })) as { items: Loose[] };
  return list.items[0];
}
const wlCondition = (wl: Loose, type: string) => wl?.status?.conditions?.find((c: Loose) => c.type === type);

/** Until the message's SeparationJob has finished and its one reply is out. */
async function replied(id: string, timeoutMs = 120_000): Promise<SentMessage[]> {
  await until(
    `the reply to ${id}`,
    async () => {
      const sj = await p.sjs.get(separationJobName(id));
      const done = findCondition(sj?.status?.conditions, "Succeeded")?.status;
      return repliesTo(id).length > 0 && (!sj || done === "True" || done === "False") ? true : undefined;
    },
    timeoutMs,
    250,
  );
  return repliesTo(id);
}

/** Nothing of these messages left: no input or intermediate object, no Job, no Secret, no Workload. */
async function nothingLeft(): Promise<void> {
  const left = await until(
    "everything to be cleaned up",
    async () => {
      let objects = 0;
      for (const prefix of ["inputs/", "work/"]) for await (const _ of p.store.list(prefix)) objects++;
      const jobs = (await p.batch.listNamespacedJob({ namespace: p.namespace })).items.length;
      const secrets = (await p.core.listNamespacedSecret({ namespace: p.namespace })).items.length;
      const workloads = (
        (await custom.listNamespacedCustomObject({ group: KUEUE_GROUP, version: KUEUE_API_VERSION, namespace: p.namespace, plural: "workloads" })) as {
          items: unknown[];
        }
      ).items.length;
      return objects + jobs + secrets + workloads === 0 ? { objects, jobs, secrets, workloads } : undefined;
    },
    60_000,
    500,
  );
  assert.deepEqual(left, { objects: 0, jobs: 0, secrets: 0, workloads: 0 });
}

async function kubectl(args: string[], input?: string): Promise<string> {
  const run = promisify(execFile)(bin("kubectl"), ["--kubeconfig", p.stack.kube?.kubeconfigPath as string, ...args], { maxBuffer: 16 << 20 });
  if (input !== undefined) run.child.stdin?.end(input);
  return (await run).stdout;
}

describe("Kueue holds separation Jobs to the ClusterQueue's GPU quota", { timeout: 600_000 }, () => {
  test("one Job admitted at a time: the next waits suspended as Queued with Kueue's reason in `kubectl describe sj`, then runs; one reply each", async (t) => {
    const first = await send("first", "SLEEP=15");
    const firstJob = await until("the first Job to be admitted", async () => {
      const j = await jobOf(first);
      return j.spec?.suspend === false ? j : undefined;
    });
    const admitted = await workloadOf(firstJob);
    assert.equal(wlCondition(admitted, "Admitted")?.status, "True", "the first Job's Workload is admitted");
    assert.equal(admitted.spec?.queueName, QUEUE);
    assert.deepEqual(
      [admitted.spec?.priorityClassRef?.kind, admitted.spec?.priorityClassRef?.name, admitted.spec?.priority],
      ["WorkloadPriorityClass", UNMIX_PRIORITY, 10],
      "the WorkloadPriorityClass the controller's label names",
    );

    const second = await send("second");
    const secondJob = await jobOf(second);
    assert.equal(secondJob.spec?.suspend, true, "Kueue's webhook suspended the Job on creation");
    const held = await until("Kueue's verdict on the second Workload", async () => {
      const wl = await workloadOf(secondJob);
      return wlCondition(wl, "QuotaReserved")?.status === "False" && wlCondition(wl, "QuotaReserved")?.message ? wl : undefined;
    });
    const verdict: string = wlCondition(held, "QuotaReserved").message;
    assert.match(verdict, /insufficient unused quota for nvidia\.com\/gpu/);
    // the controller writes Kueue's words on the SeparationJob and records them as an Event
    const sj = await until("the second SeparationJob to say why", async () => {
      const s = await p.sjs.get(separationJobName(second));
      return findCondition(s?.status?.conditions, "Scheduled")?.message?.includes(verdict) ? s : undefined;
    });
    assert.equal(findCondition(sj.status?.conditions, "Scheduled")?.reason, "Queued");
    assert.equal(findCondition(sj.status?.conditions, "Succeeded")?.reason, "Queued");
    const described = await until("the Queued Event in `kubectl describe sj`", async () => {
      const out = await kubectl(["describe", "sj", separationJobName(second), "-n", p.namespace]);
      return /Warning\s+Queued\s.*insufficient unused quota for nvidia\.com\/gpu/.test(out) ? out : undefined;
    });
    assert.match(described, /Reason:\s+Queued/);
    // what the SRE reads, in the test's output
    for (const line of described.split("\n").filter((l) => /Kueue: /.test(l))) t.diagnostic(line.trim());
    assert.equal((await jobOf(second)).status?.active ?? 0, 0, "no pod while Kueue holds the Job");

    // the first Job finishes and frees the quota: Kueue admits the second, which runs and replies
    const [firstReplies, secondReplies] = await Promise.all([replied(first), replied(second)]);
    for (const r of [firstReplies, secondReplies])
      assert.deepEqual(
        r.map((m) => m.type),
        ["audio"],
        "exactly one reply, the cleaned voice note",
      );
    await nothingLeft();
  });

  test("the pending deadline applies while Kueue holds the Job: a Busy reply, and nothing left", async () => {
    const holder = await send("holder", `SLEEP=${PENDING_DEADLINE_S + 15}`);
    await until("the holder's Job to be admitted", async () => ((await jobOf(holder)).spec?.suspend === false ? true : undefined));
    const waiter = await send("waiter");
    const job = await jobOf(waiter);
    assert.equal(job.spec?.suspend, true);
    const failed = await replied(waiter, (PENDING_DEADLINE_S + 30) * 1000);
    assert.deepEqual(
      failed.map((m) => m.text),
      [replies.failure.Busy],
      "one failure reply: busy, try again",
    );
    // the failure names Kueue's reason for the SRE (the user is told only "busy")
    const sj = await p.sjs.get(separationJobName(waiter));
    assert.equal(sj?.status?.failure?.class, "Busy");
    assert.match(sj?.status?.failure?.message ?? "", /Kueue: .*insufficient unused quota for nvidia\.com\/gpu/);
    assert.deepEqual(
      (await replied(holder)).map((m) => m.type),
      ["audio"],
    );
    await nothingLeft();
    assert.equal(repliesTo(waiter).length, 1, "still exactly one reply to the message that waited too long");
  });

  test("preemption by another team's higher-priority Job: the separation is suspended, runs again once the GPU is free, and replies once", async () => {
    const victim = await send("victim", "SLEEP=15");
    const victimJob = await until("the separation to run", async () => {
      const j = await jobOf(victim);
      return j.spec?.suspend === false && (j.status?.active ?? 0) > 0 ? j : undefined;
    });
    await until("its pod to run", async () => {
      const pods = await p.core.listNamespacedPod({ namespace: p.namespace, labelSelector: `unmix.dev/separationjob=${separationJobName(victim)}` });
      return pods.items.some((x) => x.status?.phase === "Running") ? true : undefined;
    });
    const team: k8s.V1Job = {
      metadata: { name: "train", namespace: TEAM_NS, labels: { [`${KUEUE_GROUP}/queue-name`]: QUEUE, [`${KUEUE_GROUP}/priority-class`]: URGENT_PRIORITY } },
      spec: {
        backoffLimit: 0,
        template: {
          spec: {
            restartPolicy: "Never",
            containers: [
              {
                name: "train",
                image: TEAM_IMAGE,
                resources: { requests: { cpu: "10m", memory: "16Mi", "nvidia.com/gpu": "1" }, limits: { "nvidia.com/gpu": "1" } },
              },
            ],
          },
        },
      },
    };
    await p.batch.createNamespacedJob({ namespace: TEAM_NS, body: team });
    // Kueue evicts the separation's Workload and suspends its Job
    const evicted = await until("the separation's Workload to be preempted", async () => {
      const wl = await workloadOf(victimJob);
      return wlCondition(wl, "Preempted")?.status === "True" ? wl : undefined;
    });
    assert.match(wlCondition(evicted, "Evicted")?.reason ?? "", /Preempted/);
    const sj = await until("the SeparationJob to say it was preempted", async () => {
      const s = await p.sjs.get(separationJobName(victim));
      const c = findCondition(s?.status?.conditions, "Scheduled");
      return c?.reason === "Queued" && /^Kueue: .*(Preempted|preempt)/i.test(c.message) ? s : undefined;
    });
    assert.ok(sj.status?.steps?.scheduledAt, "it had run before");
    // the team's Job runs, ends, and the separation is admitted again and runs from the start
    await until(
      "the team's Job to complete",
      async () => {
        const j = await p.batch.readNamespacedJob({ name: "train", namespace: TEAM_NS });
        return j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ? true : undefined;
      },
      120_000,
    );
    const got = await replied(victim);
    // two pods ran the separation: the one Kueue's preemption stopped, and the one after readmission
    const pods = readdirSync(p.podLogDir).filter((d) => d.startsWith(`${p.namespace}_${separationJobName(victim)}-`));
    assert.equal(pods.length, 2, `the separation's pods: ${pods.join(", ")}`);
    assert.deepEqual(
      got.map((m) => m.type),
      ["audio"],
      "exactly one reply after the retry",
    );
    await nothingLeft();
    assert.equal(repliesTo(victim).length, 1);
  });
});

describe("the chart's Kueue values against this Kueue", { timeout: 300_000 }, () => {
  const NS = "unmix-chart";
  /** What every install needs; the Kueue values are the point here. */
  const values = {
    nats: { url: "nats://nats.nats.svc:4222" },
    objectStore: { endpoint: "http://minio.storage.svc:9000", accessKey: "access-key", secretKey: "secret-key-123" },
    whatsapp: { appSecret: "app-secret-0123456789", accessToken: "EAAG-access-token" },
    networkPolicy: { objectStore: { to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "storage" } } }] } },
    job: { kueue: { queueName: QUEUE, priorityClass: UNMIX_PRIORITY } },
  };

  test("helm template + server-side dry run; the Job built from the rendered config is Kueue's to admit; the controller may list Workloads", async () => {
    const valuesFile = join(p.stack.dir, "chart-kueue-values.json");
    writeFileSync(valuesFile, JSON.stringify(values));
    const helm = [
      bin("helm"),
      ["template", "unmix", join(ROOT, "charts/unmix"), "--namespace", NS, "--kube-version", versions.KUBERNETES_VERSION as string, "-f", valuesFile],
    ] as const;
    const { stdout: text } = await promisify(execFile)(...helm, { maxBuffer: 16 << 20 });
    const objects = parseAllDocuments(text)
      .map((d) => d.toJS() as Loose)
      .filter(Boolean);
    await kubectl(["create", "namespace", NS]);
    // the helm test pods name these accounts before the release would create them
    for (const sa of ["unmix-worker", "unmix-ingress"]) await kubectl(["create", "serviceaccount", sa, "-n", NS]);
    const dry = await kubectl(["apply", "--dry-run=server", "--validate=strict", "-f", "-"], text);
    assert.equal(dry.split("\n").filter((l) => /\(server dry run\)$/.test(l)).length, objects.length, `every rendered object accepted:\n${dry}`);

    // the controller's config as rendered: its Jobs name the LocalQueue and the WorkloadPriorityClass
    const job = renderedJob(objects) as k8s.V1Job;
    delete job.metadata?.ownerReferences; // its SeparationJob does not exist here
    const taken = await p.batch.createNamespacedJob({ namespace: NS, body: job, dryRun: "All" });
    assert.equal(taken.spec?.suspend, true, "Kueue's webhook suspended it until admission");
    assert.equal(taken.metadata?.labels?.[`${KUEUE_GROUP}/queue-name`], QUEUE);
    assert.equal(taken.metadata?.labels?.[`${KUEUE_GROUP}/priority-class`], UNMIX_PRIORITY);

    // the rendered RBAC, for real: the controller's account may list Kueue's Workloads (and no more of them)
    const made = ["unmix-worker", "unmix-ingress"];
    const rbac = objects.filter(
      (o) => ["ServiceAccount", "Role", "RoleBinding"].includes(o.kind) && !(o.kind === "ServiceAccount" && made.includes(o.metadata.name)),
    );
    await kubectl(["apply", "-f", "-"], rbac.map((o) => JSON.stringify(o)).join("\n"));
    const can = (verb: string) =>
      kubectl(["auth", "can-i", verb, `workloads.${KUEUE_GROUP}`, "-n", NS, `--as=system:serviceaccount:${NS}:unmix-controller`]).catch(
        (e: { stdout?: string }) => e.stdout ?? "",
      );
    assert.equal((await can("list")).trim(), "yes");
    assert.equal((await can("update")).trim(), "no");
  });
});
