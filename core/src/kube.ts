// Kubernetes through @kubernetes/client-node, behind one narrow module: loading credentials, the
// SeparationJob resource, and the API error reasons callers branch on. Used by the ingress and the
// tests; the controller has its own lighter client (controller/src/framework/kube/).
import * as k8s from "@kubernetes/client-node";
import {
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
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

/**
 * A SeparationJob the API server's schema let in and ours refuses (created by hand, or by an older
 * version): listed by name with where it is wrong, never with the values (they may be personal).
 */
export interface InvalidSeparationJob {
  name: string;
  problems: string[];
}

export interface Listing {
  items: SeparationJob[];
  invalid: InvalidSeparationJob[];
}

export interface SeparationJobsOptions {
  /** Items per list request (limit/continue), so no one answer holds every SeparationJob. */
  pageSize?: number;
  /** Told of each invalid item a list skips (the ingress logs and counts it). */
  onInvalid?: (sj: InvalidSeparationJob) => void;
}

export class SeparationJobs {
  private readonly api: k8s.CustomObjectsApi;
  readonly namespace: string;
  private readonly pageSize: number;
  private readonly onInvalid: (sj: InvalidSeparationJob) => void;
  constructor(kc: k8s.KubeConfig, namespace: string, o: SeparationJobsOptions = {}) {
    this.api = kc.makeApiClient(k8s.CustomObjectsApi);
    this.namespace = namespace;
    this.pageSize = o.pageSize ?? 500;
    this.onInvalid = o.onInvalid ?? (() => {});
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

  /** Every SeparationJob (matching `labelSelector`), one page at a time; an item our schema refuses is reported, not thrown. */
  async *pages(labelSelector?: string): AsyncGenerator<Listing> {
    let token: string | undefined;
    do {
      const res = (await this.api.listNamespacedCustomObject({
        ...this.base(),
        ...(labelSelector ? { labelSelector } : {}),
        limit: this.pageSize,
        ...(token ? { _continue: token } : {}),
      })) as { items: unknown[]; metadata?: { continue?: string } };
      const page: Listing = { items: [], invalid: [] };
      for (const item of res.items) {
        const r = SeparationJob.safeParse(item);
        if (r.success) page.items.push(r.data);
        else {
          const name = String((item as { metadata?: { name?: unknown } })?.metadata?.name ?? "?");
          const invalid = { name, problems: r.error.issues.map((i) => `${i.path.join(".")}: ${i.code}`) };
          this.onInvalid(invalid);
          page.invalid.push(invalid);
        }
      }
      yield page;
      token = res.metadata?.continue || undefined;
    } while (token);
  }

  /** All pages at once: for small lists (one user's jobs, tests). */
  async list(labelSelector?: string): Promise<Listing> {
    const all: Listing = { items: [], invalid: [] };
    for await (const page of this.pages(labelSelector)) {
      all.items.push(...page.items);
      all.invalid.push(...page.invalid);
    }
    return all;
  }

  listOfUser(userKey: string): Promise<Listing> {
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

  /** Merge-patches metadata (finalizers, annotations). */
  async patchMetadata(name: string, metadata: Record<string, unknown>): Promise<SeparationJob> {
    return SeparationJob.parse(await this.api.patchNamespacedCustomObject({ ...this.named(name), body: { metadata } }, MERGE_PATCH));
  }
}
