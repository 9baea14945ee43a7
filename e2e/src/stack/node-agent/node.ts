// The Node object and its Lease: what makes the scheduler see this machine as a Ready GPU node.
import type * as k8s from "@kubernetes/client-node";
import { isNotFound, MERGE } from "./context.ts";

export interface LocalNode {
  name: string;
  gpus: number;
  gpuResource?: string;
  labels?: Record<string, string>;
  taints?: k8s.V1Taint[];
}

function capacity(node: LocalNode): Record<string, string> {
  return { cpu: "16", memory: "64Gi", pods: "1100", "ephemeral-storage": "100Gi", [node.gpuResource ?? "nvidia.com/gpu"]: String(node.gpus) };
}

/** Creates the Node or brings it up to date (labels, taints, capacity), and reports it Ready. */
export async function registerNode(core: k8s.CoreV1Api, node: LocalNode): Promise<void> {
  const body: k8s.V1Node = {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: node.name,
      labels: { "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", ...node.labels },
    },
    spec: { taints: node.taints ?? [] },
  };
  try {
    await core.createNode({ body });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
  // Admission (TaintNodesByCondition) gives a new Node the not-ready taint, which the node
  // lifecycle controller would lift once Ready; that controller has no place here, so set ours.
  await core.patchNode({ name: node.name, body: { metadata: body.metadata, spec: body.spec } }, MERGE);
  await writeNodeStatus(core, node);
}

async function writeNodeStatus(core: k8s.CoreV1Api, node: LocalNode): Promise<void> {
  const t = new Date().toISOString();
  await core.patchNodeStatus(
    {
      name: node.name,
      body: {
        status: {
          capacity: capacity(node),
          allocatable: capacity(node),
          addresses: [
            { type: "InternalIP", address: "127.0.0.1" },
            { type: "Hostname", address: node.name },
          ],
          conditions: [
            {
              type: "Ready",
              status: "True",
              reason: "KubeletReady",
              message: "unmix local node agent is ready",
              lastHeartbeatTime: t,
              lastTransitionTime: t,
            },
          ],
          nodeInfo: {
            architecture: "amd64",
            operatingSystem: "linux",
            kubeletVersion: "unmix-local-agent",
            kubeProxyVersion: "",
            containerRuntimeVersion: "local-process://1",
            bootID: "",
            kernelVersion: "",
            machineID: "",
            osImage: "local",
            systemUUID: "",
          },
        },
      },
    },
    MERGE,
  );
}

/** The kubelet's heartbeat: its Lease in kube-node-lease, renewed with the current time. */
export async function renewLease(coord: k8s.CoordinationV1Api, nodeName: string): Promise<void> {
  // Lease times are MicroTime: the API server insists on six fractional digits
  const renewTime = new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1000Z") as unknown as Date;
  const lease = {
    metadata: { name: nodeName, namespace: "kube-node-lease" },
    spec: { holderIdentity: nodeName, leaseDurationSeconds: 40, renewTime },
  };
  try {
    // a merge patch needs no resourceVersion (a replace without one is refused: 422)
    await coord.patchNamespacedLease({ name: nodeName, namespace: "kube-node-lease", body: { spec: lease.spec } }, MERGE);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await coord.createNamespacedLease({ namespace: "kube-node-lease", body: lease }).catch(() => {});
  }
}
