// What the bot remembers about users, all in JetStream key-value buckets keyed by the keyed hash of
// the user's id (never the number itself):
//   unmix_optout     <key> → when the user sent stop (no TTL: it holds until start; `delete` keeps it,
//                    or a stop would be undone by the erasure)
//   unmix_ratelimit  <key> → the current hour's job count and references (TTL 2 h); `delete` leaves a
//                    bare count with no reference, so delete-and-resend does not escape the limit
//   unmix_active     <key> → last seen + the reply address (wa_id/BSUID and business number), for
//                    policy-change notices (P15); no message content. TTL ACTIVE_USER_TTL_SECONDS
//                    (30 days): a user silent for a month is no longer "active" and is forgotten.
// A user may be known by a wa_id, a business-scoped user id (BSUID) or both. The primary key is the
// wa_id's when there is one, else the BSUID's; the active record is written under both keys (the
// second marked as an alias), so a purge by either id finds the other.

import { userKey } from "@unmix/core/privacy";
import { BUCKETS, type KV, kvStream, kvSubject, type Nats } from "./nats.ts";

export interface Sender {
  waId?: string;
  userId?: string;
  profileName?: string;
}

export interface ActiveUser {
  key: string;
  waId?: string;
  userId?: string;
  phoneNumberId: string;
  lastSeen: number;
}

interface ActiveRecord {
  waId?: string;
  userId?: string;
  phoneNumberId: string;
  lastSeen: number;
  /** Written under the user's secondary key, to find the primary one; not a user of its own. */
  alias?: true;
}

export interface UserKeys {
  primary: string;
  all: string[];
}

const HOUR_MS = 3600_000;

/** This hour's jobs of one user: how many, and the message references counted (so a redelivery is not counted twice). */
interface Slots {
  window: number;
  used: number;
  refs: string[];
}
const decode = <T>(bytes: Uint8Array): T => JSON.parse(Buffer.from(bytes).toString("utf8")) as T;
const encode = (v: unknown) => JSON.stringify(v);

export class UserState {
  private readonly nats: Nats;
  private readonly secret: string;
  private readonly perHour: number;
  private readonly now: () => number;

  constructor(nats: Nats, o: { secret: string; jobsPerHour: number; now?: () => number }) {
    this.nats = nats;
    this.secret = o.secret;
    this.perHour = o.jobsPerHour;
    this.now = o.now ?? Date.now;
  }

  keyOf(id: string): string {
    return userKey(id, this.secret);
  }

  keysOf(s: { waId?: string; userId?: string }): UserKeys {
    const all = [s.waId, s.userId].filter((x): x is string => !!x).map((id) => this.keyOf(id));
    if (all.length === 0) throw new TypeError("a sender needs a wa_id or a user id");
    return { primary: all[0] as string, all };
  }

  private kv(bucket: string): Promise<KV> {
    return this.nats.kv(bucket);
  }

  async isOptedOut(keys: UserKeys): Promise<boolean> {
    const kv = await this.kv(BUCKETS.optOut);
    for (const k of keys.all) {
      const e = await kv.get(k);
      if (e && e.operation === "PUT") return true;
    }
    return false;
  }

  async optOut(keys: UserKeys): Promise<void> {
    const kv = await this.kv(BUCKETS.optOut);
    for (const k of keys.all) await kv.put(k, encode({ at: this.now() }));
    await this.purge(BUCKETS.active, keys.all);
  }

  async optIn(keys: UserKeys): Promise<void> {
    await this.purge(BUCKETS.optOut, keys.all);
  }

  /**
   * Counts a job for this hour unless the limit is reached. `ref` identifies the message, so a
   * redelivery of the same message does not count twice.
   */
  async takeJobSlot(key: string, ref: string): Promise<{ allowed: boolean; used: number; limit: number }> {
    const kv = await this.kv(BUCKETS.rateLimit);
    const window = Math.floor(this.now() / HOUR_MS) * HOUR_MS;
    for (let attempt = 0; attempt < 10; attempt++) {
      const entry = await kv.get(key);
      const current = entry && entry.operation === "PUT" ? decode<Slots>(entry.value) : undefined;
      const slots: Slots = current && current.window === window ? current : { window, used: 0, refs: [] };
      if (slots.refs.includes(ref)) return { allowed: true, used: slots.used, limit: this.perHour };
      if (slots.used >= this.perHour) return { allowed: false, used: slots.used, limit: this.perHour };
      const next = encode({ window, used: slots.used + 1, refs: [...slots.refs, ref] } satisfies Slots);
      try {
        if (entry && entry.operation === "PUT") await kv.update(key, next, entry.revision);
        else await kv.create(key, next);
        return { allowed: true, used: slots.used + 1, limit: this.perHour };
      } catch (err) {
        // another worker wrote first (wrong last sequence / key exists): read again
        if (!/wrong last sequence|key exists/i.test((err as Error).message)) throw err;
      }
    }
    throw new Error("rate limit: too much contention on one user's counter");
  }

  /** Remembers that this user wrote just now, and how to reach them. */
  async touch(keys: UserKeys, sender: Sender, phoneNumberId: string): Promise<void> {
    const kv = await this.kv(BUCKETS.active);
    const record: ActiveRecord = {
      ...(sender.waId ? { waId: sender.waId } : {}),
      ...(sender.userId ? { userId: sender.userId } : {}),
      phoneNumberId,
      lastSeen: this.now(),
    };
    await kv.put(keys.primary, encode(record));
    for (const k of keys.all) if (k !== keys.primary) await kv.put(k, encode({ ...record, alias: true }));
  }

  /** Every key of the users these ids belong to, including the ids their active records link. */
  async resolve(ids: { waId?: string; userId?: string }): Promise<string[]> {
    const keys = new Set(this.keysOf(ids).all);
    const kv = await this.kv(BUCKETS.active);
    for (const k of [...keys]) {
      const e = await kv.get(k);
      if (e?.operation !== "PUT") continue;
      const r = decode<ActiveRecord>(e.value);
      for (const id of [r.waId, r.userId]) if (id) keys.add(this.keyOf(id));
    }
    return [...keys];
  }

  /** The active user stored under this (primary) key, or undefined when gone (silent for the TTL, erased, stopped). */
  async activeUser(key: string): Promise<ActiveUser | undefined> {
    const e = await (await this.kv(BUCKETS.active)).get(key);
    if (e?.operation !== "PUT") return undefined;
    const r = decode<ActiveRecord>(e.value);
    if (r.alias) return undefined;
    return { key, ...(r.waId ? { waId: r.waId } : {}), ...(r.userId ? { userId: r.userId } : {}), phoneNumberId: r.phoneNumberId, lastSeen: r.lastSeen };
  }

  async *activeUsers(): AsyncIterable<ActiveUser> {
    const kv = await this.kv(BUCKETS.active);
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    for (const key of keys) {
      const e = await kv.get(key);
      if (e?.operation !== "PUT") continue;
      const r = decode<ActiveRecord>(e.value);
      if (r.alias) continue;
      yield { key, ...(r.waId ? { waId: r.waId } : {}), ...(r.userId ? { userId: r.userId } : {}), phoneNumberId: r.phoneNumberId, lastSeen: r.lastSeen };
    }
  }

  /** How many entries these keys have in the activity and rate-limit buckets (what forget erases or empties). */
  async countEntries(keys: string[]): Promise<number> {
    let n = 0;
    for (const bucket of [BUCKETS.active, BUCKETS.rateLimit]) {
      const kv = await this.kv(bucket);
      for (const k of keys) if ((await kv.get(k))?.operation === "PUT") n++;
    }
    return n;
  }

  /**
   * Erases these keys, history included; returns how many entries there were. What the user's own
   * controls need stays, holding no message reference: an opt-out (until start), and this hour's job
   * count, bare (gone with the bucket's TTL), so that erasing does not reset the hourly limit.
   */
  async forget(keys: string[]): Promise<{ entries: number; optedOut: boolean }> {
    const optedOut = await this.isOptedOut({ primary: keys[0] ?? "", all: keys });
    const kv = await this.kv(BUCKETS.rateLimit);
    const window = Math.floor(this.now() / HOUR_MS) * HOUR_MS;
    const counts = new Map<string, number>();
    for (const k of keys) {
      const e = await kv.get(k);
      const slots = e?.operation === "PUT" ? decode<Slots>(e.value) : undefined;
      if (slots && slots.window === window && slots.used > 0) counts.set(k, slots.used);
    }
    const entries = (await this.purge(BUCKETS.rateLimit, keys)) + (await this.purge(BUCKETS.active, keys));
    for (const [k, used] of counts) await kv.put(k, encode({ window, used, refs: [] } satisfies Slots));
    return { entries, optedOut };
  }

  private async purge(bucket: string, keys: string[]): Promise<number> {
    let purged = 0;
    // purging the key's subject removes the value and its history, leaving no marker behind
    for (const k of keys) purged += await this.nats.purgeSubject(kvStream(bucket), kvSubject(bucket, k));
    return purged;
  }
}
