// startStack(): the real local stack, used by the tests and by `make dev`. Every process listens on
// a free loopback port and keeps its state in one temporary folder; stop() (or the death of this
// process) leaves nothing behind.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { type ControlPlane, startControlPlane } from "./kube.ts";
import { type KueueServer, startKueue } from "./kueue.ts";
import { type NatsServer, startNats } from "./nats.ts";
import { type ImageMapping, NodeAgent } from "./node-agent/index.ts";
import { type S3Server, startS3 } from "./s3.ts";

export type { ImageMapping } from "./node-agent/index.ts";

export type Component = "kube" | "nats" | "s3";

export interface StackOptions {
  components?: Component[];
  /** GPUs the local node advertises (nvidia.com/gpu). */
  gpus?: number;
  /** Image name (with or without tag) → local command, for pods on the local node. */
  images?: Record<string, ImageMapping>;
  nodeLabels?: Record<string, string>;
  nodeTaints?: k8s.V1Taint[];
  /** Kueue's controller-manager, CRDs and webhooks too (kueue.ts; built on first use, minutes). */
  kueue?: boolean;
  /** Keep the folder after stop(), for debugging. */
  keep?: boolean;
}

export interface Stack {
  dir: string;
  kube?: ControlPlane & { kc: k8s.KubeConfig; node: NodeAgent };
  kueue?: KueueServer;
  nats?: NatsServer;
  s3?: S3Server;
  /** Environment variables for the product's processes to reach this stack. */
  env(): Record<string, string>;
  stop(): Promise<void>;
}

export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const components = o.components ?? ["kube", "nats", "s3"];
  const root = join(tmpdir(), "unmix-stack");
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, "run-"));
  const started: { stop(): Promise<void> }[] = [];
  const stack: Stack = {
    dir,
    env() {
      const e: Record<string, string> = {};
      if (stack.kube) e.KUBECONFIG = stack.kube.kubeconfigPath;
      // the ingress's user (webhook and worker in one process); stack.nats.env() gives the others
      if (stack.nats) Object.assign(e, stack.nats.env("ingress"));
      if (stack.s3)
        Object.assign(e, { S3_ENDPOINT: stack.s3.endpoint, S3_REGION: stack.s3.region, S3_ACCESS_KEY: stack.s3.accessKey, S3_SECRET_KEY: stack.s3.secretKey });
      return e;
    },
    async stop() {
      for (const s of started.reverse()) await s.stop().catch(() => {});
      if (!o.keep) rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all([
      components.includes("nats") &&
        startNats(dir).then((n) => {
          stack.nats = n;
          started.push(n);
        }),
      components.includes("s3") &&
        startS3(dir).then((s) => {
          stack.s3 = s;
          started.push(s);
        }),
      components.includes("kube") &&
        startControlPlane(dir).then(async (cp) => {
          started.push(cp);
          const kc = new k8s.KubeConfig();
          kc.loadFromFile(cp.kubeconfigPath);
          const node = new NodeAgent({
            kubeconfigPath: cp.kubeconfigPath,
            dir,
            gpus: o.gpus ?? 1,
            images: o.images ?? {},
            ...(o.nodeLabels ? { labels: o.nodeLabels } : {}),
            ...(o.nodeTaints ? { taints: o.nodeTaints } : {}),
          });
          started.push(node);
          await node.start();
          stack.kube = { ...cp, kc, node };
          await waitForDefaultServiceAccount(kc);
          if (o.kueue) {
            stack.kueue = await startKueue(dir, cp.kubeconfigPath, kc);
            started.push(stack.kueue);
          }
        }),
    ]);
  } catch (err) {
    await stack.stop();
    throw err;
  }
  return stack;
}

/** Pods cannot be created in a namespace until the service-account controller made its default account. */
export async function waitForDefaultServiceAccount(kc: k8s.KubeConfig, namespace = "default", timeoutMs = 60_000): Promise<void> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await core.readNamespacedServiceAccount({ name: "default", namespace });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`no default service account in ${namespace}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
