// A work queue with client-go's semantics (util/workqueue): a key added while queued is merged
// (dirty set), a key is never handed to two workers at once (processing set; a key added while in
// flight is queued again when its worker calls done), delayed adds, per-key exponential back-off
// for retries, and a token bucket that caps how many keys per second are handed out overall.

/** Thrown by a reconcile to be retried after `ms` rather than after the queue's back-off. */
export class RetryAfter extends Error {
  readonly ms: number;
  constructor(ms: number, message: string) {
    super(message);
    this.name = "RetryAfter";
    this.ms = ms;
  }
}

export interface WorkQueueOptions {
  /** First retry delay; doubles per consecutive failure of the same key. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Overall cap on keys handed out per second, with this burst. */
  qps: number;
  burst: number;
  /** Called whenever the number of queued keys changes (for the depth gauge). */
  onDepth?: (depth: number) => void;
}

/** Per-key exponential back-off: base·2^failures, capped; forget() resets a key after success. */
export class ExponentialBackoff<K> {
  private readonly failures = new Map<K, number>();
  private readonly baseMs: number;
  private readonly maxMs: number;
  constructor(baseMs: number, maxMs: number) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }
  when(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return Math.min(this.baseMs * 2 ** Math.min(n, 40), this.maxMs);
  }
  retries(key: K): number {
    return this.failures.get(key) ?? 0;
  }
  forget(key: K): void {
    this.failures.delete(key);
  }
}

/** A token bucket: reserve() takes a token and says how long to wait until it is really there. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly qps: number;
  private readonly burst: number;
  constructor(qps: number, burst: number) {
    this.qps = qps;
    this.burst = burst;
    this.tokens = burst;
    this.last = Date.now();
  }
  reserve(): number {
    const t = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.qps) / 1000);
    this.last = t;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.qps);
  }
}

export class WorkQueue<K extends string = string> {
  private readonly queue: K[] = [];
  private head = 0;
  private readonly dirty = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly delayed = new Map<K, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: (() => void)[] = [];
  private readonly drainWaiters: (() => void)[] = [];
  private readonly backoff: ExponentialBackoff<K>;
  private readonly bucket: TokenBucket;
  private readonly onDepth: (depth: number) => void;
  private shuttingDown = false;
  /** Keys added since start, merged ones included (for metrics). */
  adds = 0;
  retries = 0;

  constructor(o: WorkQueueOptions) {
    this.backoff = new ExponentialBackoff<K>(o.baseDelayMs, o.maxDelayMs);
    this.bucket = new TokenBucket(o.qps, o.burst);
    this.onDepth = o.onDepth ?? (() => {});
  }

  /** Queues `key` unless it is already queued; a key in flight is queued again after done(). */
  add(key: K): void {
    if (this.shuttingDown) return;
    this.adds++;
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds `key` after `ms`; of several pending delays for one key the earliest wins. */
  addAfter(key: K, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    timer.unref?.();
    this.delayed.set(key, { at, timer });
  }

  /** Adds `key` after its back-off (a retry after a failure). */
  addRateLimited(key: K): number {
    const delay = this.backoff.when(key);
    this.retries++;
    this.addAfter(key, delay);
    return delay;
  }

  /** How many consecutive failures `key` has had. */
  numRequeues(key: K): number {
    return this.backoff.retries(key);
  }

  /** Resets the back-off of `key` (after a success). */
  forget(key: K): void {
    this.backoff.forget(key);
  }

  /**
   * The next key to work on, once one is queued and the overall rate allows it; undefined once the
   * queue is shut down. The caller must call done(key) when finished with it.
   */
  async get(): Promise<K | undefined> {
    for (;;) {
      while (this.len() === 0) {
        if (this.shuttingDown) return undefined;
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
      if (this.shuttingDown) return undefined;
      const wait = this.bucket.reserve();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (this.len() === 0) continue; // another worker took it meanwhile
      const key = this.queue[this.head] as K;
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      this.dirty.delete(key);
      this.processing.add(key);
      this.onDepth(this.len());
      return key;
    }
  }

  done(key: K): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    if (this.processing.size === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  len(): number {
    return this.queue.length - this.head;
  }

  inFlight(): number {
    return this.processing.size;
  }

  /** Stops handing out keys; resolves once every key in flight is done. */
  async shutDown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w();
    if (this.processing.size > 0) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  private push(key: K): void {
    this.queue.push(key);
    this.onDepth(this.len());
    this.waiters.shift()?.();
  }
}
