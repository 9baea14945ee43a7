// A simulated GPU fleet next to the stack's one real node: KWOK's controller (sigs.k8s.io/kwok, built
// by `install.sh kwok` on first use) keeps the Nodes annotated kwok.x-k8s.io/node=fake Ready and
// plays the pods the real scheduler binds to them through its Stages (e2e/stack/kwok-stages.yaml):
// Running at once, Succeeded (exit 0) after `runMs`. The node agent never sees those pods: it
// watches only pods bound to its own node (spec.nodeName). Nothing runs in the pods, so what a job
// would write (result and manifest) is the caller's to put in the object store.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { MERGE } from "./node-agent/context.ts";
import { freePort } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitUntil } from "./processes.ts";
import { bin, REPO_ROOT, versions } from "./versions.ts";

export const FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node";

export interface FleetOptions {
  nodes: number;
  gpusPerNode: number;
  gpuResource?: string;
  /** How long a pod on a fake node runs before it succeeds; a random extra up to `runJitterMs`. */
  runMs: number;
  runJitterMs?: number;
  labels?: Record<string, string>;
  taints?: k8s.V1Taint[];
  namePrefix?: string;
}

export interface Fleet {
  nodeNames: string[];
  /** KWOK's own /metrics. */
  metricsUrl: string;
  stop(): Promise<void>;
}

/** Builds the pinned kwok into the cache unless it is there (a minute or two on 2 cores, once). */
export function ensureKwok(): string {
  const path = bin("kwok");
  const version = join(path, "..", ".kwok.version");
  if (!existsSync(path) || !existsSync(version) || readFileSync(version, "utf8").trim() !== versions.KWOK_VERSION)
    execFileSync("bash", [join(REPO_ROOT, "e2e/stack/install.sh"), "kwok"], { stdio: "inherit" });
  return path;
}

/** The upstream Stages with pod-complete delayed by the simulated run time. */
function stages(runMs: number, jitterMs: number): string {
  const docs = parseAllDocuments(readFileSync(join(REPO_ROOT, "e2e/stack/kwok-stages.yaml"), "utf8"));
  for (const d of docs) {
    if (d.getIn(["metadata", "name"]) !== "pod-complete") continue;
    // KWOK's jitter is the upper bound of the delay, not an addition to it
    d.setIn(["spec", "delay"], d.createNode({ durationMilliseconds: runMs, jitterDurationMilliseconds: runMs + jitterMs }));
  }
  return docs.map((d) => d.toString()).join("---\n");
}

export async function startFleet(o: FleetOptions, cp: { kubeconfigPath: string }, core: k8s.CoreV1Api, dir: string): Promise<Fleet> {
  const kwok = ensureKwok();
  const config = join(dir, "kwok-stages.yaml");
  writeFileSync(config, stages(o.runMs, o.runJitterMs ?? 0));
  const port = await freePort();
  const proc: ManagedProcess = spawnManaged({
    name: "kwok",
    command: kwok,
    args: [
      `--kubeconfig=${cp.kubeconfigPath}`,
      `--config=${config}`,
      "--manage-all-nodes=false",
      `--manage-nodes-with-annotation-selector=${FAKE_NODE_ANNOTATION}=fake`,
      `--server-address=127.0.0.1:${port}`,
    ],
    dir,
  });
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  await waitUntil("kwok", async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, { process: proc, timeoutMs: 60_000 });
  const resource = o.gpuResource ?? "nvidia.com/gpu";
  const nodeNames = Array.from({ length: o.nodes }, (_, i) => `${o.namePrefix ?? "kwok-gpu"}-${String(i).padStart(3, "0")}`);
  const capacity = { cpu: "64", memory: "512Gi", pods: "110", [resource]: String(o.gpusPerNode) };
  const taints = o.taints ?? [];
  const register = async (name: string) => {
    await core.createNode({
      body: {
        metadata: {
          name,
          annotations: { [FAKE_NODE_ANNOTATION]: "fake" },
          labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", type: "kwok", ...o.labels },
        },
        spec: { taints },
      },
    });
    // admission gives a new Node the not-ready taint, which the node lifecycle controller (not run
    // here) would lift; KWOK's node-initialize stage keeps the capacity it finds
    await core.patchNode({ name, body: { spec: { taints } } }, MERGE);
    await core.patchNodeStatus({ name, body: { status: { capacity, allocatable: capacity } } }, MERGE);
  };
  for (let i = 0; i < nodeNames.length; i += 20) await Promise.all(nodeNames.slice(i, i + 20).map(register));
  await waitUntil(
    `${o.nodes} KWOK nodes Ready`,
    async () => {
      const { items } = await core.listNode({ labelSelector: "type=kwok" });
      const ready = items.filter(
        (n) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") && n.status.allocatable?.[resource] === String(o.gpusPerNode),
      );
      return ready.length >= o.nodes;
    },
    { process: proc, timeoutMs: 120_000 },
  );
  return {
    nodeNames,
    metricsUrl,
    async stop() {
      await proc.stop();
    },
  };
}
