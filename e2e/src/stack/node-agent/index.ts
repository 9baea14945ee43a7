// A local node agent: the part of a kubelet this stack needs. It registers a Node advertising GPUs,
// runs the containers of pods the real scheduler binds to it as local processes (image name mapped
// to a local command), and writes phase, container states, exit codes and termination messages back
// through the API exactly where a kubelet would, so the real Job controller, podFailurePolicy and
// garbage collector act on them.
//
// Deliberate differences from a kubelet (documented in e2e/README.md): no container isolation; volume
// mount paths are local folders and env values/args that start with a mount path are rewritten to
// them; a projected service-account token volume also gets a kubeconfig (KUBECONFIG) since the
// in-cluster paths cannot exist; each pod gets its own loopback address (127.1.x.y) as its pod IP;
// with no kube-proxy, each Service gets a loopback address (127.2.x.y) where the agent forwards
// connections to a ready endpoint, and pods see it in the kubelet's service variables.
//
// One module per concern: node.ts (the Node and its Lease), pod-sync.ts (which pods run here),
// containers.ts (processes, exits, restarts), probes.ts, volumes.ts and env.ts (what a container
// sees), services.ts (Service forwarding), pod-run.ts (a pod's state and its status in the API).
import * as k8s from "@kubernetes/client-node";
import type { AgentContext, ImageMapping } from "./context.ts";
import { type LocalNode, registerNode, renewLease } from "./node.ts";
import { PodSync } from "./pod-sync.ts";
import { ServiceForwarder } from "./services.ts";

export type { ImageMapping } from "./context.ts";

export interface NodeAgentOptions {
  kubeconfigPath: string;
  dir: string;
  nodeName?: string;
  gpus?: number;
  gpuResource?: string;
  labels?: Record<string, string>;
  taints?: k8s.V1Taint[];
  images: Record<string, ImageMapping>;
}

export class NodeAgent {
  readonly nodeName: string;
  private readonly node: LocalNode;
  private readonly coord: k8s.CoordinationV1Api;
  private readonly ctx: AgentContext;
  private readonly pods: PodSync;
  private heartbeat?: NodeJS.Timeout;

  constructor(o: NodeAgentOptions) {
    this.nodeName = o.nodeName ?? "unmix-gpu-node";
    this.node = { name: this.nodeName, gpus: o.gpus ?? 1, gpuResource: o.gpuResource, labels: o.labels, taints: o.taints };
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(o.kubeconfigPath);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    this.coord = kc.makeApiClient(k8s.CoordinationV1Api);
    this.ctx = { kc, core, images: o.images, services: new ServiceForwarder(core) };
    this.pods = new PodSync(this.ctx, this.nodeName, o.dir);
  }

  async start(): Promise<void> {
    await registerNode(this.ctx.core, this.node);
    await renewLease(this.coord, this.nodeName);
    this.heartbeat = setInterval(() => void renewLease(this.coord, this.nodeName).catch(() => {}), 10_000);
    await this.pods.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    await this.pods.stop();
    await this.ctx.services.close();
  }

  /** Changes the advertised GPU count (for tests of capacity). */
  async setGpus(n: number): Promise<void> {
    this.node.gpus = n;
    await registerNode(this.ctx.core, this.node);
  }
}
