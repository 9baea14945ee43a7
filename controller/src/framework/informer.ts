// An informer: a local cache of one kind of object kept current by list + watch, with the discipline
// client-node's ListWatch lacks (it stops for good on any non-timeout error, never relists, never
// notices a watch that went quiet): paginated lists, watch bookmarks, a periodic relist that repairs
// whatever a watch missed, a restart of a stalled watch, and a restart with back-off after any error.
// Handlers get add/update/delete; objects in the cache are shared and must not be mutated.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "@unmix/core/log";
import type { KubeClient } from "./kube/client.ts";

export interface KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; managedFields?: unknown };
}

type Handler<T> = (obj: T, old?: T) => void;

export interface InformerOptions<T> {
  client: KubeClient;
  /** Collection path, e.g. /apis/batch/v1/namespaces/default/jobs */
  path: string;
  labelSelector?: string;
  /** Relist everything this often even when the watch looks healthy. */
  relistMs: number;
  /** Restart a watch that delivered nothing (not even a bookmark) for this long. */
  stallMs: number;
  pageSize?: number;
  /** Applied to every object before it is cached (the default drops managedFields); it may build a new object. */
  transform?: (obj: T) => T;
  log: Logger;
  onRelist?: () => void;
  onWatchRestart?: (reason: "stall" | "error" | "expired" | "closed") => void;
}

interface ListBody<T> {
  items?: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

const keyOf = (o: KubeObject) => o.metadata?.name ?? "";

function stripManagedFields<T extends KubeObject>(o: T): T {
  if (o.metadata?.managedFields) delete o.metadata.managedFields;
  return o;
}

export class Informer<T extends KubeObject> {
  private objects = new Map<string, T>();
  private resourceVersion = "";
  private readonly handlers = { add: [] as Handler<T>[], update: [] as Handler<T>[], delete: [] as Handler<T>[] };
  private readonly o: InformerOptions<T>;
  private readonly transform: (obj: T) => T;
  private stopped = true;
  private synced = false;
  private running?: Promise<void>;
  private current?: AbortController;
  private relistDue = false;
  private relistTimer?: NodeJS.Timeout;
  private syncWaiters: (() => void)[] = [];
  /** When the last list or watch event arrived (for health checks). */
  lastActivity = 0;

  constructor(o: InformerOptions<T>) {
    this.o = o;
    this.transform = o.transform ?? stripManagedFields;
  }

  on(event: "add" | "update" | "delete", handler: Handler<T>): void {
    this.handlers[event].push(handler);
  }

  get(name: string): T | undefined {
    return this.objects.get(name);
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  size(): number {
    return this.objects.size;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Starts the list/watch loop; resolves once the first list is in the cache. */
  async start(): Promise<void> {
    if (!this.stopped) return this.waitForSync();
    this.stopped = false;
    this.relistTimer = setInterval(() => {
      this.relistDue = true;
      this.current?.abort();
    }, this.o.relistMs);
    this.relistTimer.unref();
    this.running = this.loop();
    return this.waitForSync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.relistTimer);
    this.current?.abort();
    for (const w of this.syncWaiters.splice(0)) w();
    await this.running;
  }

  private waitForSync(): Promise<void> {
    if (this.synced || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  private async loop(): Promise<void> {
    let backoffMs = 0;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion || this.relistDue) {
          this.relistDue = false;
          await this.relist();
        }
        const reason = await this.watchOnce();
        backoffMs = 0;
        if (!this.stopped && reason !== "relist") this.o.onWatchRestart?.(reason);
      } catch (err) {
        if (this.stopped) break;
        backoffMs = Math.min(Math.max(1000, backoffMs * 2), 30_000);
        this.o.log.warn({ err, path: this.o.path, retryInMs: backoffMs }, "list/watch failed; restarting");
        this.o.onWatchRestart?.("error");
        await sleep(backoffMs, undefined, { ref: false }).catch(() => {});
      }
    }
  }

  private query(extra: Record<string, string>): string {
    const q = new URLSearchParams(extra);
    if (this.o.labelSelector) q.set("labelSelector", this.o.labelSelector);
    return q.toString();
  }

  /** Lists every object (paginated) and reconciles the cache with it, emitting the differences. */
  private async relist(): Promise<void> {
    const fresh = new Map<string, T>();
    let cont = "";
    let rv = "";
    do {
      const page = await this.o.client.request<ListBody<T>>(
        "GET",
        `${this.o.path}?${this.query({ limit: String(this.o.pageSize ?? 500), ...(cont ? { continue: cont } : {}) })}`,
      );
      for (const item of page.items ?? []) {
        const obj = this.transform(item);
        fresh.set(keyOf(obj), obj);
      }
      cont = page.metadata?.continue ?? "";
      rv = page.metadata?.resourceVersion ?? "";
    } while (cont && !this.stopped);
    this.lastActivity = Date.now();
    this.o.onRelist?.();
    const old = this.objects;
    this.objects = fresh;
    this.resourceVersion = rv;
    for (const [name, obj] of fresh) {
      const before = old.get(name);
      if (!before) this.emit("add", obj);
      else if (before.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit("update", obj, before);
    }
    for (const [name, obj] of old) if (!fresh.has(name)) this.emit("delete", obj);
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  /** Watches from the cached resourceVersion until the watch ends; says why it ended. */
  private async watchOnce(): Promise<"stall" | "expired" | "closed" | "relist"> {
    const ctrl = new AbortController();
    this.current = ctrl;
    if (this.stopped || this.relistDue) ctrl.abort();
    let expired = false;
    const onEvent = (type: string, raw: unknown) => {
      this.lastActivity = Date.now();
      if (type === "ERROR") {
        if ((raw as { code?: number }).code === 410) expired = true;
        ctrl.abort();
        return;
      }
      const obj = this.transform(raw as T);
      const rv = obj.metadata?.resourceVersion;
      if (type === "BOOKMARK") {
        if (rv) this.resourceVersion = rv;
        return;
      }
      const name = keyOf(obj);
      const before = this.objects.get(name);
      if (type === "DELETED") {
        this.objects.delete(name);
        this.emit("delete", obj);
      } else if (type === "ADDED" || type === "MODIFIED") {
        this.objects.set(name, obj);
        if (!before) this.emit("add", obj);
        else if (before.metadata?.resourceVersion !== rv) this.emit("update", obj, before);
      }
      if (rv) this.resourceVersion = rv;
    };
    // the server ends a watch after timeoutSeconds; spread them so watches do not reconnect in step
    const query: Record<string, string> = {
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(300 + Math.floor(Math.random() * 300)),
      ...(this.o.labelSelector ? { labelSelector: this.o.labelSelector } : {}),
    };
    try {
      await this.o.client.watch(this.o.path, query, onEvent, { signal: ctrl.signal, inactivityMs: this.o.stallMs });
    } catch (err) {
      if (expired || (err as { code?: number }).code === 410) {
        this.resourceVersion = "";
        return "expired";
      }
      if (this.stopped || this.relistDue) return "relist";
      if ((err as { name?: string }).name === "TimeoutError") return "stall";
      throw err;
    } finally {
      this.current = undefined;
    }
    if (expired) {
      this.resourceVersion = "";
      return "expired";
    }
    return this.stopped || this.relistDue ? "relist" : "closed";
  }

  private emit(event: "add" | "update" | "delete", obj: T, old?: T): void {
    for (const h of this.handlers[event]) {
      try {
        h(obj, old);
      } catch (err) {
        this.o.log.error({ err, event }, "informer handler threw");
      }
    }
  }
}
