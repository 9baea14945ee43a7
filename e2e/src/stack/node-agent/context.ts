// What the node agent's parts share: the API clients, the image table and the Service forwarder
// whose addresses pods see.
import * as k8s from "@kubernetes/client-node";
import type { ServiceForwarder } from "./services.ts";

export interface ImageMapping {
  /** Local command standing in for the image's entrypoint. */
  entrypoint: string[];
  /** Commands a pod spec may name (command[0]) mapped to local commands. */
  commands?: Record<string, string[]>;
  env?: Record<string, string>;
  cwd?: string;
}

export interface AgentContext {
  readonly kc: k8s.KubeConfig;
  readonly core: k8s.CoreV1Api;
  readonly images: Record<string, ImageMapping>;
  readonly services: ServiceForwarder;
}

export const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
export const isNotFound = (err: unknown) => (err as { code?: number }).code === 404;
