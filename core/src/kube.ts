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
  SENDER_SECRET_LABEL,
  Sender,
  SeparationJob,
  type SeparationJobSpec,
  type SeparationJobStatus,
  senderSecretName,
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
  /** Who sent which message: goes into the sender Secret, never onto the SeparationJob; its messageId names the job. */
  sender: Sender;
  /** Keyed hash of the sender (never the number itself). */
  userKey: string;
  traceparent?: string;
}

const isFinished = (sj: SeparationJob) => sj.status?.conditions?.some((c) => c.type === "Succeeded" && c.status !== "Unknown") ?? false;

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
  /** The list's resourceVersion (of its first page): a watch from it misses no change made after the list. */
  resourceVersion?: string;
}

/** A change a watch saw; `DELETED` carries the object's last state. */
export type WatchEvent = { type: "ADDED" | "MODIFIED" | "DELETED"; sj: SeparationJob };

export interface SeparationJobsOptions {
  /** Items per list request (limit/continue), so no one answer holds every SeparationJob. */
  pageSize?: number;
  /** Told of each invalid item a list skips (the ingress logs and counts it). */
  onInvalid?: (sj: InvalidSeparationJob) => void;
}

export class SeparationJobs {
  private readonly kc: k8s.KubeConfig;
  private readonly api: k8s.CustomObjectsApi;
  private readonly core: k8s.CoreV1Api;
  readonly namespace: string;
  private readonly pageSize: number;
  private readonly onInvalid: (sj: InvalidSeparationJob) => void;
  constructor(kc: k8s.KubeConfig, namespace: string, o: SeparationJobsOptions = {}) {
    this.kc = kc;
    this.api = kc.makeApiClient(k8s.CustomObjectsApi);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
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

  /**
   * Creates the job for a message, then its sender Secret, owned by it; `created: false` when one
   * already exists for that wamid. The SeparationJob comes first so the Secret is never an orphan
   * (the garbage collector deletes it with its owner). A crash between the two leaves the message
   * unacknowledged: its redelivery lands here, finds the SeparationJob and creates the missing
   * Secret (the controller fails a SeparationJob whose Secret never comes).
   */
  async create(n: NewSeparationJob): Promise<{ name: string; created: boolean }> {
    const sender = Sender.parse(n.sender);
    const name = separationJobName(sender.messageId);
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
    let sj: SeparationJob;
    let created = true;
    try {
      sj = SeparationJob.parse(await this.api.createNamespacedCustomObject({ ...this.base(), body }));
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      created = false;
      const existing = await this.get(name);
      // finished: its Secret was deleted on purpose; being deleted: nothing to add to it
      if (!existing || isFinished(existing) || existing.metadata.deletionTimestamp) return { name, created };
      sj = existing;
    }
    await this.createSender(sj, sender);
    return { name, created };
  }

  private async createSender(sj: SeparationJob, sender: Sender): Promise<void> {
    const stringData: Record<string, string> = {};
    for (const [k, v] of Object.entries(sender)) if (v !== undefined) stringData[k] = v;
    const body: k8s.V1Secret = {
      metadata: {
        name: senderSecretName(sj.metadata.name),
        labels: { [SENDER_SECRET_LABEL]: sj.metadata.name, "app.kubernetes.io/managed-by": "unmix" },
        ownerReferences: [{ apiVersion: API_VERSION, kind: KIND, name: sj.metadata.name, uid: sj.metadata.uid ?? "" }],
      },
      type: "Opaque",
      immutable: true,
      stringData,
    };
    try {
      await this.core.createNamespacedSecret({ namespace: this.namespace, body });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  /** The person behind a SeparationJob, from its sender Secret; undefined when there is none (any more). */
  async sender(name: string): Promise<Sender | undefined> {
    try {
      const secret = await this.core.readNamespacedSecret({ name: senderSecretName(name), namespace: this.namespace });
      return decodeSender(secret.data);
    } catch (err) {
      if (isNotFound(err)) return undefined;
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
      })) as { items: unknown[]; metadata?: { continue?: string; resourceVersion?: string } };
      const page: Listing = { items: [], invalid: [], ...(res.metadata?.resourceVersion ? { resourceVersion: res.metadata.resourceVersion } : {}) };
      for (const item of res.items) {
        const r = SeparationJob.safeParse(item);
        if (r.success) page.items.push(r.data);
        else {
          const invalid = invalidItem(item, r.error);
          this.onInvalid(invalid);
          page.invalid.push(invalid);
        }
      }
      yield page;
      token = res.metadata?.continue || undefined;
    } while (token);
  }

  /**
   * Watches the namespace's SeparationJobs from `resourceVersion` (a list's): each change in order; an
   * item our schema refuses is reported to onInvalid and skipped. `done` is called once when the
   * watch ends (the API server's timeout, 410 Gone, a lost connection); the caller lists and watches
   * again. Returns the abort that ends it early.
   */
  async watch(resourceVersion: string | undefined, onEvent: (e: WatchEvent) => void, done: (err?: unknown) => void): Promise<() => void> {
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PLURAL}`;
    const req = await new k8s.Watch(this.kc).watch(
      path,
      resourceVersion ? { resourceVersion } : {},
      (type, obj) => {
        if (type !== "ADDED" && type !== "MODIFIED" && type !== "DELETED") return; // BOOKMARK, ERROR: done() follows an ERROR
        const r = SeparationJob.safeParse(obj);
        if (r.success) onEvent({ type, sj: r.data });
        else this.onInvalid(invalidItem(obj, r.error));
      },
      (err) => done(err ?? undefined),
    );
    return () => req.abort();
  }

  /** All pages at once: for small lists (one user's jobs, tests). */
  async list(labelSelector?: string): Promise<Listing> {
    const all: Listing = { items: [], invalid: [] };
    for await (const page of this.pages(labelSelector)) {
      all.resourceVersion ??= page.resourceVersion;
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

/** Where an item our schema refuses is wrong, by name and field paths, never the values. */
function invalidItem(item: unknown, error: { issues: { path: PropertyKey[]; code: string }[] }): InvalidSeparationJob {
  const name = String((item as { metadata?: { name?: unknown } })?.metadata?.name ?? "?");
  return { name, problems: error.issues.map((i) => `${i.path.map(String).join(".")}: ${i.code}`) };
}

/** A sender Secret's `data` (base64 values) as a Sender; undefined when it is not one. */
function decodeSender(data: Record<string, string> | undefined): Sender | undefined {
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(data ?? {})) fields[k] = Buffer.from(v, "base64").toString("utf8");
  const r = Sender.safeParse(fields);
  return r.success ? r.data : undefined;
}
