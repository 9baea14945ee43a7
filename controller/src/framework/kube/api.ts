// Every call the controller makes to the API server: the paths, the verbs and the envelopes of the
// manifests are here and nowhere else. The SeparationJob calls are those of @unmix/core/kube's
// SeparationJobs, over this package's own client instead of client-node (connection.ts says why).
import { GROUP, PLURAL, SeparationJob, type SeparationJobStatus, VERSION } from "@unmix/api/separationjob";
import { isNotFound, type KubeClient, statusCode } from "./client.ts";
import type { EventManifest, JobManifest, JobView, Lease, SecretManifest, WorkloadView } from "./objects.ts";

/** What the reconciler and the garbage collector do to SeparationJobs. */
export interface SeparationJobApi {
  get(name: string): Promise<SeparationJob | undefined>;
  /** Every SeparationJob at once: for tests and the benchmark; the garbage collector walks pages(). */
  list(): Promise<SeparationJob[]>;
  /** One page (limit/continue) at a time, so a week of finished ones is never in memory together; invalid items skipped. */
  pages(limit?: number): AsyncGenerator<SeparationJob[]>;
  /** Merge patch of /status guarded by resourceVersion: a write based on a stale read fails with Conflict. */
  patchStatus(name: string, resourceVersion: string, status: SeparationJobStatus): Promise<SeparationJob>;
  /** Background propagation, so the owned Job and its pods go too; false when already gone. */
  delete(name: string): Promise<boolean>;
}

export interface JobApi {
  get(name: string): Promise<JobView | undefined>;
  /** false when a Job of that name exists already (the name is the lock). */
  create(job: JobManifest): Promise<boolean>;
  /** Background propagation, so its pods go too; a Job already gone is fine. */
  delete(name: string): Promise<void>;
}

/** The Secrets next to a SeparationJob: its sender (read), the presigned URLs of its Job (written). */
export interface SecretApi {
  /** Values decoded from base64; undefined when there is none. */
  get(name: string): Promise<Record<string, string> | undefined>;
  /** Creates it, or replaces the data of the one of that name. */
  put(secret: SecretManifest): Promise<void>;
  /** false when already gone. */
  delete(name: string): Promise<boolean>;
}

export interface LeaseApi {
  get(name: string): Promise<Lease | undefined>;
  create(name: string, spec: NonNullable<Lease["spec"]>): Promise<Lease>;
  /** Optimistic: fails with Conflict (409) when the Lease changed since `resourceVersion`. */
  update(name: string, resourceVersion: string | undefined, spec: NonNullable<Lease["spec"]>): Promise<Lease>;
}

/** Kueue's Workloads (kueue.x-k8s.io/v1beta2), read only, to say why Kueue holds a Job. */
export interface WorkloadApi {
  /** The Workload Kueue made for the Job with this uid; undefined when there is none (yet), or no Kueue. */
  ofJob(jobUid: string): Promise<WorkloadView | undefined>;
}

export interface KubeApi {
  /** The one namespace of the SeparationJobs, their Jobs, Events and the Lease. */
  namespace: string;
  /** The collections the informers list and watch. */
  collections: { separationJobs: string; jobs: string; pods: string };
  separationJobs: SeparationJobApi;
  jobs: JobApi;
  workloads: WorkloadApi;
  secrets: SecretApi;
  events: { create(event: EventManifest): Promise<void> };
  leases: LeaseApi;
}

const PAGE = 500;

export function kubeApi(client: KubeClient, namespace: string): KubeApi {
  const ns = `namespaces/${namespace}`;
  const collections = {
    separationJobs: `/apis/${GROUP}/${VERSION}/${ns}/${PLURAL}`,
    jobs: `/apis/batch/v1/${ns}/jobs`,
    pods: `/api/v1/${ns}/pods`,
  };
  const leases = `/apis/coordination.k8s.io/v1/${ns}/leases`;
  const secrets = `/api/v1/${ns}/secrets`;
  const workloads = `/apis/kueue.x-k8s.io/v1beta2/${ns}/workloads`;

  /** undefined when there is none. */
  const getIfAny = async <T>(path: string): Promise<T | undefined> => {
    try {
      return await client.request<T>("GET", path);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };
  /** Background propagation; false when already gone. */
  const remove = async (path: string): Promise<boolean> => {
    try {
      // the options in the body too: some clients drop query parameters when a body is sent
      await client.request("DELETE", `${path}?propagationPolicy=Background`, {
        body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" },
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  };
  const lease = (name: string, resourceVersion: string | undefined, spec: NonNullable<Lease["spec"]>): Lease => ({
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name, namespace, ...(resourceVersion !== undefined ? { resourceVersion } : {}) },
    spec,
  });

  async function* sjPages(limit = PAGE): AsyncGenerator<SeparationJob[]> {
    let cont = "";
    do {
      const page = await client.request<{ items: unknown[]; metadata?: { continue?: string } }>(
        "GET",
        `${collections.separationJobs}?limit=${limit}${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
      );
      const items: SeparationJob[] = [];
      for (const i of page.items) {
        const r = SeparationJob.safeParse(i);
        if (r.success) items.push(r.data);
      }
      yield items;
      cont = page.metadata?.continue ?? "";
    } while (cont);
  }

  return {
    namespace,
    collections,
    separationJobs: {
      async get(name) {
        const raw = await getIfAny(`${collections.separationJobs}/${name}`);
        return raw === undefined ? undefined : SeparationJob.parse(raw);
      },
      async list() {
        const items: SeparationJob[] = [];
        for await (const page of sjPages()) items.push(...page);
        return items;
      },
      pages: sjPages,
      async patchStatus(name, resourceVersion, status) {
        const body = { metadata: { resourceVersion }, status };
        const path = `${collections.separationJobs}/${name}/status`;
        return SeparationJob.parse(await client.request("PATCH", path, { body, contentType: "application/merge-patch+json" }));
      },
      delete: (name) => remove(`${collections.separationJobs}/${name}`),
    },
    jobs: {
      get: (name) => getIfAny<JobView>(`${collections.jobs}/${name}`),
      async create(job) {
        try {
          await client.request("POST", collections.jobs, { body: job });
          return true;
        } catch (err) {
          if (statusCode(err) === 409) return false;
          throw err;
        }
      },
      async delete(name) {
        await remove(`${collections.jobs}/${name}`);
      },
    },
    workloads: {
      async ofJob(jobUid) {
        // Kueue labels each Workload with its Job's uid; the collection is missing (404) without Kueue's CRDs
        const list = await getIfAny<{ items: WorkloadView[] }>(`${workloads}?labelSelector=${encodeURIComponent(`kueue.x-k8s.io/job-uid=${jobUid}`)}`);
        return list?.items[0];
      },
    },
    secrets: {
      async get(name) {
        const secret = await getIfAny<SecretManifest>(`${secrets}/${name}`);
        if (!secret) return undefined;
        const values: Record<string, string> = {};
        for (const [k, v] of Object.entries(secret.data ?? {})) values[k] = Buffer.from(v, "base64").toString("utf8");
        return values;
      },
      async put(secret) {
        try {
          await client.request("POST", secrets, { body: secret });
        } catch (err) {
          if (statusCode(err) !== 409) throw err;
          await client.request("PUT", `${secrets}/${secret.metadata?.name}`, { body: secret });
        }
      },
      delete: (name) => remove(`${secrets}/${name}`),
    },
    events: {
      async create(event) {
        await client.request("POST", `/apis/events.k8s.io/v1/${ns}/events`, { body: event });
      },
    },
    leases: {
      get: (name) => getIfAny<Lease>(`${leases}/${name}`),
      create: (name, spec) => client.request<Lease>("POST", leases, { body: lease(name, undefined, spec) }),
      update: (name, resourceVersion, spec) => client.request<Lease>("PUT", `${leases}/${name}`, { body: lease(name, resourceVersion, spec) }),
    },
  };
}
