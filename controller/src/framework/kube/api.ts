// The SeparationJob calls the controller makes, over its own client (see kube-config.ts for why not
// @unmix/core/kube, whose SeparationJobs class offers the same calls over client-node).
import { GROUP, PLURAL, SeparationJob, type SeparationJobStatus, VERSION } from "@unmix/api/separationjob";
import { isNotFound, type KubeClient } from "./kube-client.ts";

/** What the reconciler and the garbage collector need; @unmix/core/kube's SeparationJobs fits too. */
export interface SeparationJobApi {
  get(name: string): Promise<SeparationJob | undefined>;
  list(): Promise<SeparationJob[]>;
  /** Merge patch of /status guarded by resourceVersion: a write based on a stale read fails with Conflict. */
  patchStatus(name: string, resourceVersion: string, status: SeparationJobStatus): Promise<SeparationJob>;
  /** Background propagation, so the owned Job and its pods go too; false when already gone. */
  delete(name: string): Promise<boolean>;
}

export function separationJobApi(client: KubeClient, namespace: string): SeparationJobApi {
  const base = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
  return {
    async get(name) {
      try {
        return SeparationJob.parse(await client.request("GET", `${base}/${name}`));
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async list() {
      const items: SeparationJob[] = [];
      let cont = "";
      do {
        const page = await client.request<{ items: unknown[]; metadata?: { continue?: string } }>(
          "GET",
          `${base}?limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
        );
        for (const i of page.items) {
          const r = SeparationJob.safeParse(i);
          if (r.success) items.push(r.data);
        }
        cont = page.metadata?.continue ?? "";
      } while (cont);
      return items;
    },
    async patchStatus(name, resourceVersion, status) {
      const body = { metadata: { resourceVersion }, status };
      return SeparationJob.parse(await client.request("PATCH", `${base}/${name}/status`, { body, contentType: "application/merge-patch+json" }));
    },
    async delete(name) {
      try {
        // the options in the body too: some clients drop query parameters when a body is sent
        await client.request("DELETE", `${base}/${name}?propagationPolicy=Background`, {
          body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" },
        });
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    },
  };
}
