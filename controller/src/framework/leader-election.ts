// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: try to
// acquire every retryPeriod; a held lease counts as expired only leaseDuration after *we* last saw
// it change (local clock, so clock skew between replicas does not matter); the leader renews every
// retryPeriod and gives up leading when no renewal succeeded for renewDeadline; updates are
// optimistic (resourceVersion), so of two candidates exactly one wins; on graceful shutdown the
// leader releases the lease so a standby takes over at once.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "@unmix/core/log";
import type { KubeClient } from "./kube-client.ts";

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
  /** Monotonic milliseconds (injected in tests). */
  now?: () => number;
  /** Wall clock for the Lease's times. */
  wallClock?: () => Date;
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

/** MicroTime: the API server insists on six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  private readonly now: () => number;
  private readonly wall: () => Date;
  private observed?: Lease;
  private observedAt = 0;
  private lastRenew = 0;
  private leading = false;
  private stopped = false;
  private readonly stopController = new AbortController();

  constructor(o: LeaderElectionOptions) {
    this.o = o;
    this.now = o.now ?? (() => performance.now());
    this.wall = o.wallClock ?? (() => new Date());
  }

  get identity(): string {
    return this.o.identity;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The holder we last saw (for logs and status). */
  currentHolder(): string | undefined {
    return this.observed?.spec.holderIdentity ?? undefined;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`;
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
        this.lastRenew = this.now();
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
      while (!renewed && this.now() < deadline && !this.stopped) {
        const attempt = this.tryAcquireOrRenew();
        const timeout = Math.max(1, deadline - this.now());
        renewed = await Promise.race([attempt, sleep(timeout, false, { ref: false })]);
        if (!renewed && this.now() < deadline && !this.stopped) await this.pause(Math.min(this.o.retryPeriodMs / 2, Math.max(1, deadline - this.now())));
      }
      if (this.stopped) break;
      if (!renewed) {
        this.leading = false;
        this.o.log.error({ identity: this.o.identity, renewDeadlineMs: this.o.renewDeadlineMs }, "lost leadership: could not renew the lease in time");
        return "lost";
      }
      this.lastRenew = this.now();
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

  private async get(): Promise<Lease | undefined> {
    try {
      return await this.o.client.request<Lease>("GET", `${this.path}/${this.o.name}`);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = microTime(this.wall());
    const durationSeconds = Math.ceil(this.o.leaseDurationMs / 1000);
    try {
      const lease = await this.get();
      if (!lease) {
        const created = await this.o.client.request<Lease>("POST", this.path, {
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name: this.o.name, namespace: this.o.namespace },
            spec: { holderIdentity: this.o.identity, leaseDurationSeconds: durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
          },
        });
        this.observe(created);
        return true;
      }
      // a change of holder, renew time or duration counts as "seen alive" from now on
      const o = this.observed;
      if (
        !o ||
        o.spec.holderIdentity !== lease.spec.holderIdentity ||
        o.spec.renewTime !== lease.spec.renewTime ||
        o.metadata.resourceVersion !== lease.metadata.resourceVersion
      )
        this.observe(lease);
      const holder = lease.spec.holderIdentity ?? "";
      const mine = holder === this.o.identity;
      const heldFor = (lease.spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (holder && !mine && this.observedAt + heldFor > this.now()) return false;
      const updated = await this.o.client.request<Lease>("PUT", `${this.path}/${this.o.name}`, {
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.o.name, namespace: this.o.namespace, resourceVersion: lease.metadata.resourceVersion },
          spec: {
            holderIdentity: this.o.identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: mine && lease.spec.acquireTime ? microTime(new Date(lease.spec.acquireTime)) : now,
            renewTime: now,
            leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
          },
        },
      });
      this.observe(updated);
      return true;
    } catch (err) {
      const code = (err as { code?: number }).code;
      // 409: another candidate won the race (or renewed) since we read the lease
      if (code !== 409) this.o.log.warn({ err, identity: this.o.identity }, "lease update failed");
      return false;
    }
  }

  private observe(lease: Lease): void {
    this.observed = lease;
    this.observedAt = this.now();
  }

  private async release(): Promise<void> {
    try {
      const lease = await this.get();
      if (!lease || lease.spec.holderIdentity !== this.o.identity) return;
      const now = microTime(this.wall());
      await this.o.client.request("PUT", `${this.path}/${this.o.name}`, {
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.o.name, namespace: this.o.namespace, resourceVersion: lease.metadata.resourceVersion },
          // client-go's release: no holder, a one-second duration, so any standby acquires at once
          spec: { holderIdentity: null, leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: lease.spec.leaseTransitions ?? 0 },
        },
      });
      this.o.log.info({ identity: this.o.identity }, "released the lease");
    } catch (err) {
      this.o.log.warn({ err }, "could not release the lease");
    }
  }
}
