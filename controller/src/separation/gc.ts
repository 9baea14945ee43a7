// Garbage collection, on the leader, with an injected clock: cached results past their TTL (the
// 24-hour promise), inputs and job outputs no live SeparationJob owns (a SeparationJob deleted
// mid-flight, a crash before cleanup) once older than a grace period, and finished SeparationJobs
// past retention.
import { findCondition } from "@unmix/api/conditions";
import type { SeparationJob } from "@unmix/api/separationjob";
import type { Logger } from "@unmix/core/log";
import type { ObjectStore } from "@unmix/core/object-store";
import { INPUTS_PREFIX, type ResultCache } from "@unmix/core/result-cache";
import type { SeparationJobApi } from "../framework/kube/api.ts";
import type { Metrics } from "../metrics.ts";
import { isFinished } from "./status.ts";

export interface GcSettings {
  orphanGraceMs: number;
  retentionMs: number;
  /** SeparationJobs listed per request: memory holds one page, not a week of them. */
  pageSize: number;
}

export interface GcReport {
  cacheExpired: number;
  separationJobsDeleted: number;
  orphansDeleted: number;
}

export interface GcDeps {
  sjs: SeparationJobApi;
  store: ObjectStore;
  /** Built with the same clock. */
  cache: ResultCache;
  clock: () => Date;
  log: Logger;
  metrics?: Metrics;
  settings: GcSettings;
}

const WORK_PREFIX = "work/";

function finishedAt(sj: SeparationJob): number | undefined {
  const t = sj.status?.steps?.finishedAt ?? findCondition(sj.status?.conditions, "Succeeded")?.lastTransitionTime;
  return t ? Date.parse(t) : undefined;
}

export class GarbageCollector {
  private readonly d: GcDeps;
  constructor(d: GcDeps) {
    this.d = d;
  }

  async runOnce(): Promise<GcReport> {
    const now = this.d.clock().getTime();
    const { orphanGraceMs, retentionMs, pageSize } = this.d.settings;

    const expired = await this.d.cache.expire();

    const active = new Set<string>();
    let deleted = 0;
    for await (const page of this.d.sjs.pages(pageSize)) {
      for (const sj of page) {
        const done = isFinished(sj);
        const at = finishedAt(sj);
        if (done && at !== undefined && now - at >= retentionMs) {
          if (await this.d.sjs.delete(sj.metadata.name)) deleted++;
          continue;
        }
        if (!done) active.add(sj.metadata.name);
      }
    }

    // inputs/<sj> and work/<sj>/… of a SeparationJob that is gone or finished
    const orphans: string[] = [];
    for (const prefix of [INPUTS_PREFIX, WORK_PREFIX]) {
      for await (const o of this.d.store.list(prefix)) {
        const owner = o.key.slice(prefix.length).split("/")[0] ?? "";
        if (!active.has(owner) && now - o.lastModified.getTime() >= orphanGraceMs) orphans.push(o.key);
      }
    }
    await this.d.store.remove(orphans);

    const report = { cacheExpired: expired.length, separationJobsDeleted: deleted, orphansDeleted: orphans.length };
    this.d.metrics?.gcDeleted.inc({ kind: "cache" }, expired.length);
    this.d.metrics?.gcDeleted.inc({ kind: "separationjob" }, deleted);
    this.d.metrics?.gcDeleted.inc({ kind: "orphan" }, orphans.length);
    if (expired.length || deleted || orphans.length) this.d.log.info(report, "garbage collected");
    return report;
  }
}
