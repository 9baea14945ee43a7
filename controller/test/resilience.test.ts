// The informer and the leader elector against a real API server that goes away and comes back.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { k8s } from "@unmix/core/kube";
import { createLogger } from "@unmix/core/log";
import { type Stack, startStack } from "@unmix/e2e/stack";
import { Informer, type KubeObject } from "../src/framework/informer.ts";
import { kubeApi } from "../src/framework/kube/api.ts";
import { createKubeClient, type KubeClient } from "../src/framework/kube/client.ts";
import { kubeconfigConnection } from "../src/framework/kube/connection.ts";
import { LeaderElector } from "../src/framework/leader-election.ts";
import { until } from "./harness.ts";

let stack: Stack;
let client: KubeClient;
let core: k8s.CoreV1Api;
const log = createLogger("test", { level: "silent" });

before(async () => {
  stack = await startStack({ components: ["kube"], gpus: 0 });
  client = createKubeClient(await kubeconfigConnection(stack.kube?.kubeconfigPath as string));
  core = (stack.kube as NonNullable<Stack["kube"]>).kc.makeApiClient(k8s.CoreV1Api);
});
after(async () => {
  await client?.close();
  await stack?.stop();
});

const configMap = (name: string, data: Record<string, string> = {}) => ({ metadata: { name, labels: { suite: "resilience" } }, data });

describe("informer", () => {
  test("lists, watches, relists, and comes back after the API server restarts", async () => {
    await core.createNamespacedConfigMap({ namespace: "default", body: configMap("before") });
    const seen: string[] = [];
    const gone: string[] = [];
    const restarts: string[] = [];
    let relists = 0;
    const inf = new Informer<KubeObject>({
      client,
      path: "/api/v1/namespaces/default/configmaps",
      labelSelector: "suite=resilience",
      relistMs: 3_000,
      stallMs: 5_000,
      log,
      onWatchRestart: (r) => restarts.push(r),
      onRelist: () => relists++,
    });
    inf.on("add", (o) => seen.push(o.metadata?.name ?? ""));
    inf.on("delete", (o) => gone.push(o.metadata?.name ?? ""));
    await inf.start();
    assert.ok(inf.hasSynced());
    assert.ok(inf.get("before"), "the first list fills the cache");

    await core.createNamespacedConfigMap({ namespace: "default", body: configMap("watched") });
    await until("the watch to deliver an add", () => (seen.includes("watched") ? true : undefined));
    await core.deleteNamespacedConfigMap({ name: "watched", namespace: "default" });
    await until("the watch to deliver a delete", () => (gone.includes("watched") ? true : undefined));
    assert.equal(inf.get("watched"), undefined);

    await stack.kube?.restartApiServer();
    await core.createNamespacedConfigMap({ namespace: "default", body: configMap("after-restart") });
    await until("the informer to see an object created after the restart", () => (inf.get("after-restart") ? true : undefined), 90_000);
    assert.ok(restarts.length > 0, "the watch was restarted");
    await until("a periodic relist", () => (relists >= 2 ? true : undefined));
    assert.deepEqual(
      seen.filter((n) => n === "before"),
      ["before"],
      "a relist of an unchanged object emits nothing",
    );
    await inf.stop();
  });

  test("a watch that goes quiet is restarted (stall detection)", async () => {
    const restarts: string[] = [];
    const inf = new Informer<KubeObject>({
      client,
      path: "/api/v1/namespaces/kube-public/configmaps",
      labelSelector: "none=here",
      relistMs: 600_000,
      stallMs: 1_500,
      log,
      onWatchRestart: (r) => restarts.push(r),
    });
    await inf.start();
    // nothing ever changes for this selector; the server sends no bookmark within 1.5 s
    await until("a stall restart", () => (restarts.includes("stall") ? true : undefined), 30_000);
    await inf.stop();
  });
});

describe("leader election on a Lease", () => {
  const elector = (identity: string, name: string, over: Partial<ConstructorParameters<typeof LeaderElector>[0]> = {}) =>
    new LeaderElector({
      leases: kubeApi(client, "default").leases,
      name,
      identity,
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 500,
      log,
      ...over,
    });
  const lease = (name: string) =>
    (stack.kube as NonNullable<Stack["kube"]>).kc.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name, namespace: "default" });

  test("one leads, the other waits; a crashed leader's lease expires and the other takes over", async () => {
    const a = elector("a", "le-crash");
    const b = elector("b", "le-crash");
    assert.equal(await a.acquire(), true);
    let bLeads = false;
    const bAcquired = b.acquire().then((v) => {
      bLeads = v;
    });
    const holding = a.holdLeadership();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(bLeads, false, "b stands by while a renews");
    assert.equal((await lease("le-crash")).spec?.holderIdentity, "a");
    // a "crashes": stops renewing without releasing
    await a.stop(false);
    await holding;
    await bAcquired;
    assert.equal(bLeads, true);
    const l = await lease("le-crash");
    assert.equal(l.spec?.holderIdentity, "b");
    assert.equal(l.spec?.leaseTransitions, 1);
    assert.match(
      String((await client.request<{ spec: { renewTime: string } }>("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/le-crash")).spec.renewTime),
      /\.\d{6}Z$/,
      "MicroTime with six digits",
    );
    await b.stop();
  });

  test("a graceful stop releases the lease", async () => {
    const a = elector("a", "le-release", { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, retryPeriodMs: 500 });
    const b = elector("b", "le-release", { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, retryPeriodMs: 500 });
    assert.equal(await a.acquire(), true);
    const bAcquired = b.acquire();
    await a.stop(true);
    // with a 60 s lease, b gets it this soon only because a handed it back
    assert.equal(await Promise.race([bAcquired, new Promise((r) => setTimeout(() => r("timeout"), 20_000))]), true);
    await b.stop();
  });

  test("a leader that cannot renew within the deadline stops leading", async () => {
    const a = elector("a", "le-deadline");
    assert.equal(await a.acquire(), true);
    const holding = a.holdLeadership();
    const restart = stack.kube?.restartApiServer();
    assert.equal(await holding, "lost");
    assert.equal(a.isLeader(), false);
    await restart;
    await a.stop();
  });
});
