// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: try to
// acquire every retryPeriod; a held lease counts as expired only leaseDuration after *we* last saw
// it change (local clock, so clock skew between replicas does not matter); the leader renews every
// retryPeriod and gives up leading when no renewal succeeded for renewDeadline; updates are
// optimistic (resourceVersion), so of two candidates exactly one wins; on graceful shutdown the
// leader releases the lease so a standby takes over at once.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "@unmix/core/log";
import type { LeaseApi } from "./kube/api.ts";
import { statusCode } from "./kube/client.ts";
import { type Lease, microTime } from "./kube/objects.ts";

export interface LeaderElectionOptions {
  leases: LeaseApi;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
}

/** Monotonic milliseconds: the lease's expiry is judged on this replica's own clock. */
const now = () => performance.now();

export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  private observed?: Lease;
  private observedAt = 0;
  private lastRenew = 0;
  private leading = false;
  private stopped = false;
  private readonly stopController = new AbortController();

  constructor(o: LeaderElectionOptions) {
    this.o = o;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The holder we last saw (for logs). */
  private currentHolder(): string | undefined {
    return this.observed?.spec?.holderIdentity;
  }

  /**
   * Blocks until this replica leads (true) or stop() was called (false). Then call
   * holdLeadership() to keep renewing.
   */
  async acquire(): Promise<boolean> {
    let logged = false;
    while (!this.stopped) {
      if (await this.tryAcquireOrRenew()) {
        this.leading = true;
        this.lastRenew = now();
        this.o.log.info({ identity: this.o.identity }, "became the leader");
        return true;
      }
      if (!logged) {
        this.o.log.info({ identity: this.o.identity, leader: this.currentHolder() }, "standing by: another replica leads");
        logged = true;
      }
      await this.pause(this.o.retryPeriodMs * (1 + Math.random() * 0.2));
    }
    return false;
  }

  /**
   * Renews until leadership is lost (no successful renewal within renewDeadline, or another
   * holder took the lease) or stop() is called. Resolves with the reason.
   */
  async holdLeadership(): Promise<"lost" | "stopped"> {
    while (!this.stopped) {
      await this.pause(this.o.retryPeriodMs);
      if (this.stopped) break;
      const deadline = this.lastRenew + this.o.renewDeadlineMs;
      let renewed = false;
      while (!renewed && now() < deadline && !this.stopped) {
        const attempt = this.tryAcquireOrRenew();
        const timeout = Math.max(1, deadline - now());
        renewed = await Promise.race([attempt, sleep(timeout, false, { ref: false })]);
        if (!renewed && now() < deadline && !this.stopped) await this.pause(Math.min(this.o.retryPeriodMs / 2, Math.max(1, deadline - now())));
      }
      if (this.stopped) break;
      if (!renewed) {
        this.leading = false;
        this.o.log.error({ identity: this.o.identity, renewDeadlineMs: this.o.renewDeadlineMs }, "lost leadership: could not renew the lease in time");
        return "lost";
      }
      this.lastRenew = now();
    }
    return "stopped";
  }

  /** Stops acquiring/renewing; the leader hands the lease back so a standby takes over at once. */
  async stop(release = true): Promise<void> {
    this.stopped = true;
    this.stopController.abort();
    if (release && this.leading) await this.release();
    this.leading = false;
  }

  private async pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.stopController.signal, ref: false }).catch(() => {});
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const at = microTime(new Date());
    const durationSeconds = Math.ceil(this.o.leaseDurationMs / 1000);
    try {
      const lease = await this.o.leases.get(this.o.name);
      if (!lease) {
        const spec = { holderIdentity: this.o.identity, leaseDurationSeconds: durationSeconds, acquireTime: at, renewTime: at, leaseTransitions: 0 };
        this.observe(await this.o.leases.create(this.o.name, spec));
        return true;
      }
      // a change of holder, renew time or duration counts as "seen alive" from now on
      const o = this.observed;
      if (
        !o ||
        o.spec?.holderIdentity !== lease.spec?.holderIdentity ||
        o.spec?.renewTime !== lease.spec?.renewTime ||
        o.metadata?.resourceVersion !== lease.metadata?.resourceVersion
      )
        this.observe(lease);
      const holder = lease.spec?.holderIdentity ?? "";
      const mine = holder === this.o.identity;
      const heldFor = (lease.spec?.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (holder && !mine && this.observedAt + heldFor > now()) return false;
      const acquired = lease.spec?.acquireTime;
      const updated = await this.o.leases.update(this.o.name, lease.metadata?.resourceVersion, {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine && acquired ? microTime(new Date(acquired)) : at,
        renewTime: at,
        leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1),
      });
      this.observe(updated);
      return true;
    } catch (err) {
      // 409: another candidate won the race (or renewed) since we read the lease
      if (statusCode(err) !== 409) this.o.log.warn({ err, identity: this.o.identity }, "lease update failed");
      return false;
    }
  }

  private observe(lease: Lease): void {
    this.observed = lease;
    this.observedAt = now();
  }

  private async release(): Promise<void> {
    try {
      const lease = await this.o.leases.get(this.o.name);
      if (!lease || lease.spec?.holderIdentity !== this.o.identity) return;
      const at = microTime(new Date());
      // client-go's release: no holder, a one-second duration, so any standby acquires at once
      await this.o.leases.update(this.o.name, lease.metadata?.resourceVersion, {
        leaseDurationSeconds: 1,
        acquireTime: at,
        renewTime: at,
        leaseTransitions: lease.spec?.leaseTransitions ?? 0,
      });
      this.o.log.info({ identity: this.o.identity }, "released the lease");
    } catch (err) {
      this.o.log.warn({ err }, "could not release the lease");
    }
  }
}
