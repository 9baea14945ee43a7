// Garbage collection, on the leader, with an injected clock: cached results past their TTL (the
// 24-hour promise), inputs and job outputs no live SeparationJob owns (a SeparationJob deleted
// mid-flight, a crash before cleanup) once older than a grace period, finished SeparationJobs
// past retention, and unfinished ones past their last maximum age (with what they stored: their
// Job goes through its owner reference), whatever held them. Each result's and input's audit entry
// (P5) is written before it is deleted: a refused entry leaves it for the next run.
import { findCondition } from "@unmix/api/conditions";
import type { SeparationJob } from "@unmix/api/separationjob";
import type { AuditLog } from "@unmix/core/audit";
import type { Logger } from "@unmix/core/log";
import type { ObjectStore } from "@unmix/core/object-store";
import { INPUTS_PREFIX, type ResultCache } from "@unmix/core/result-cache";
import type { SeparationJobApi } from "../framework/kube/api.ts";
import type { Metrics } from "../metrics.ts";
import { auditStep } from "./context.ts";
import { removeStored } from "./finalize.ts";
import { isFinished } from "./status.ts";

export interface GcSettings {
  orphanGraceMs: number;
  retentionMs: number;
  /** An unfinished SeparationJob older than this (since created) is deleted with what it stored. */
  unfinishedMaxAgeMs: number;
  /** SeparationJobs listed per request: memory holds one page, not a week of them. */
  pageSize: number;
}

export interface GcReport {
  cacheExpired: number;
  /** Copies of expired results deleted from WhatsApp's media store. */
  whatsappMediaDeleted: number;
  separationJobsDeleted: number;
  /** Unfinished ones past MAX_AGE_UNFINISHED_SECONDS. */
  unfinishedDeleted: number;
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
  audit: AuditLog;
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
    const { orphanGraceMs, retentionMs, unfinishedMaxAgeMs, pageSize } = this.d.settings;

    // a result expires for every message it was made for whose SeparationJob is still kept
    const expired = await this.d.cache.expire(async (keys) => {
      // nothing expired (most runs): no second walk through every SeparationJob
      if (!keys.length) return;
      const gone = new Set(keys);
      for await (const page of this.d.sjs.pages(pageSize))
        for (const sj of page) {
          const key = sj.status?.result?.cacheKey;
          if (key && gone.has(key)) await auditStep(this.d.audit, sj.metadata.name, { event: "result-expired" });
        }
    });

    const active = new Set<string>();
    let deleted = 0;
    let unfinished = 0;
    for await (const page of this.d.sjs.pages(pageSize)) {
      for (const sj of page) {
        if (isFinished(sj)) {
          const at = finishedAt(sj);
          if (at !== undefined && now - at >= retentionMs && (await this.d.sjs.delete(sj.metadata.name))) deleted++;
          continue;
        }
        const created = Date.parse(sj.metadata.creationTimestamp ?? "");
        if (now - created >= unfinishedMaxAgeMs) {
          this.d.log.error({ sj: sj.metadata.name, createdAt: sj.metadata.creationTimestamp }, "unfinished past its maximum age: deleted with what it stored");
          await auditStep(this.d.audit, sj.metadata.name, { event: "input-deleted", reason: "overdue" });
          if (await this.d.sjs.delete(sj.metadata.name)) unfinished++;
          await removeStored(this.d.store, sj.metadata.name);
          continue;
        }
        active.add(sj.metadata.name);
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
    for (const key of orphans)
      if (key.startsWith(INPUTS_PREFIX)) await auditStep(this.d.audit, key.slice(INPUTS_PREFIX.length), { event: "input-deleted", reason: "orphan" });
    await this.d.store.remove(orphans);

    const report = {
      cacheExpired: expired.keys.length,
      whatsappMediaDeleted: expired.whatsappMedia,
      separationJobsDeleted: deleted,
      unfinishedDeleted: unfinished,
      orphansDeleted: orphans.length,
    };
    this.d.metrics?.gcDeleted.inc({ kind: "cache" }, expired.keys.length);
    this.d.metrics?.gcDeleted.inc({ kind: "whatsapp-media" }, expired.whatsappMedia);
    this.d.metrics?.gcDeleted.inc({ kind: "separationjob" }, deleted);
    this.d.metrics?.gcDeleted.inc({ kind: "unfinished" }, unfinished);
    this.d.metrics?.gcDeleted.inc({ kind: "orphan" }, orphans.length);
    if (expired.keys.length || deleted || unfinished || orphans.length) this.d.log.info(report, "garbage collected");
    return report;
  }
}
