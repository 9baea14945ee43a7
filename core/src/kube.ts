// Kubernetes through @kubernetes/client-node, behind one narrow module: loading credentials, the
// SeparationJob resource, and the API error reasons callers branch on. Used by the ingress and the
// tests; the controller has its own lighter client (controller/src/framework/kube/).
import * as k8s from "@kubernetes/client-node";
import {
  API_VERSION,
  formatReceipt,
  GROUP,
  KIND,
  PLURAL,
  parseReceipt,
  REPLY_RECEIPT_ANNOTATION,
  type ReplyReceipt,
  SeparationJob,
  type SeparationJobSpec,
  type SeparationJobStatus,
  separationJobName,
  TRACEPARENT_ANNOTATION,
  USER_LABEL,
  VERSION,
} from "@unmix/api/separationjob";
import { apiReason } from "./kube-errors.ts";

export { k8s };

/** KUBECONFIG when set, else ~/.kube/config, else the in-cluster service account. */
export function kubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  return kc;
}

export const MERGE_PATCH = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);

export const isNotFound = (err: unknown) => apiReason(err) === "NotFound";
export const isAlreadyExists = (err: unknown) => apiReason(err) === "AlreadyExists";

export interface NewSeparationJob {
  spec: SeparationJobSpec;
  /** Keyed hash of the sender (never the number itself). */
  userKey: string;
  traceparent?: string;
}

export class SeparationJobs {
  private readonly api: k8s.CustomObjectsApi;
  readonly namespace: string;
  constructor(kc: k8s.KubeConfig, namespace: string) {
    this.api = kc.makeApiClient(k8s.CustomObjectsApi);
    this.namespace = namespace;
  }

  private base() {
    return { group: GROUP, version: VERSION, namespace: this.namespace, plural: PLURAL };
  }

  private named(name: string) {
    return { ...this.base(), name };
  }

  /** Creates the job for a message; `created: false` when one already exists for that wamid. */
  async create(n: NewSeparationJob): Promise<{ name: string; created: boolean }> {
    const name = separationJobName(n.spec.message.id);
    const body = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: {
        name,
        labels: { [USER_LABEL]: n.userKey, "app.kubernetes.io/managed-by": "unmix" },
        annotations: n.traceparent ? { [TRACEPARENT_ANNOTATION]: n.traceparent } : {},
      },
      spec: n.spec,
    };
    try {
      await this.api.createNamespacedCustomObject({ ...this.base(), body });
      return { name, created: true };
    } catch (err) {
      if (isAlreadyExists(err)) return { name, created: false };
      throw err;
    }
  }

  async get(name: string): Promise<SeparationJob | undefined> {
    try {
      return SeparationJob.parse(await this.api.getNamespacedCustomObject(this.named(name)));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async list(labelSelector?: string): Promise<SeparationJob[]> {
    const res = (await this.api.listNamespacedCustomObject({ ...this.base(), ...(labelSelector ? { labelSelector } : {}) })) as { items: unknown[] };
    return res.items.map((i) => SeparationJob.parse(i));
  }

  listOfUser(userKey: string): Promise<SeparationJob[]> {
    return this.list(`${USER_LABEL}=${userKey}`);
  }

  /** Deletes with background propagation so the owned Job and pods go too; false when already gone. */
  async delete(name: string): Promise<boolean> {
    try {
      await this.api.deleteNamespacedCustomObject({ ...this.named(name), propagationPolicy: "Background" });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Merge-patches /status guarded by resourceVersion, so a write based on a stale read fails with
   * Conflict instead of overwriting a newer status.
   */
  async patchStatus(name: string, resourceVersion: string, status: SeparationJobStatus): Promise<SeparationJob> {
    const res = await this.api.patchNamespacedCustomObjectStatus({ ...this.named(name), body: { metadata: { resourceVersion }, status } }, MERGE_PATCH);
    return SeparationJob.parse(res);
  }

  /**
   * Records a status-webhook receipt of the reply on the SeparationJob named in the reply's
   * biz_opaque_callback_data, only while its reply is Sending (the one state whose outcome is open)
   * and only the first: a receipt for a finished or recorded reply changes nothing and costs no write.
   */
  async recordReplyReceipt(name: string, receipt: ReplyReceipt): Promise<"recorded" | "unneeded" | "gone"> {
    const sj = await this.get(name);
    if (!sj) return "gone";
    if (sj.status?.reply?.state !== "Sending" || parseReceipt(sj.metadata.annotations?.[REPLY_RECEIPT_ANNOTATION])) return "unneeded";
    try {
      await this.api.patchNamespacedCustomObject(
        // guarded by the resourceVersion read: a concurrent change (Sent written) is read again
        {
          ...this.named(name),
          body: { metadata: { resourceVersion: sj.metadata.resourceVersion, annotations: { [REPLY_RECEIPT_ANNOTATION]: formatReceipt(receipt) } } },
        },
        MERGE_PATCH,
      );
    } catch (err) {
      if (isNotFound(err)) return "gone";
      if (apiReason(err) === "Conflict") return this.recordReplyReceipt(name, receipt);
      throw err;
    }
    return "recorded";
  }

  /** Merge-patches metadata (finalizers, annotations). */
  async patchMetadata(name: string, metadata: Record<string, unknown>): Promise<SeparationJob> {
    return SeparationJob.parse(await this.api.patchNamespacedCustomObject({ ...this.named(name), body: { metadata } }, MERGE_PATCH));
  }
}
