// Erasing what is stored about a user (policy promises P13 and P14): the cached results they
// received (and their copies in WhatsApp's media store), their SeparationJobs (the controller
// removes their inputs), their recent activity and their dead letters. Kept, with no message
// reference: an opt-out (a stop holds; an admin purge adds one) and this hour's bare job count (the limit holds); and the
// pseudonymous audit trail for its 30 days (docs/data-retention.md). The same code serves the
// `delete` command and the admin purge. Messages still queued in the inbound stream are
// left alone: they are handled within seconds, and one sent just after `delete` must not vanish.
// Their policy broadcasts go too: the outcome recorded per campaign, and a notice not yet sent.
import type { SeparationJobs } from "@unmix/core/kube";
import type { ResultCache } from "@unmix/core/result-cache";
import { BUCKETS, kvStream, kvSubject, type Nats, STREAMS, subjects } from "./nats.ts";
import type { UserState } from "./users.ts";

export interface Erased {
  results: number;
  jobs: number;
  keyValueEntries: number;
  deadLetters: number;
  /** Opted out afterwards: their stop is kept, and the admin purge opts them out. */
  optedOut: boolean;
}

export interface EraseDeps {
  users: UserState;
  cache: ResultCache;
  jobs: SeparationJobs;
  nats: Nats;
}

/**
 * What eraseUser would erase now, as counts (never content): for the support console's purge
 * screen, before the operator confirms.
 */
export async function heldFor(ids: { waId?: string; userId?: string }, d: EraseDeps): Promise<Erased> {
  const keys = await d.users.resolve(ids);
  const out: Erased = { results: 0, jobs: 0, keyValueEntries: 0, deadLetters: 0, optedOut: false };
  for (const key of keys) {
    out.results += await d.cache.countUser(key);
    const { items, invalid } = await d.jobs.listOfUser(key);
    out.jobs += items.length + invalid.length;
    out.deadLetters += await d.nats.countSubject(STREAMS.deadLetter, subjects.deadLetter(key));
  }
  out.keyValueEntries = await d.users.countEntries(keys);
  out.optedOut = await d.users.isOptedOut({ primary: keys[0] as string, all: keys });
  return out;
}

/**
 * `optOut`: the user is opted out too (the admin purge: a child's data must not build up again);
 * their own `delete` keeps whatever opt-out they chose.
 */
export async function eraseUser(ids: { waId?: string; userId?: string }, d: EraseDeps, o: { optOut?: boolean } = {}): Promise<Erased> {
  const keys = await d.users.resolve(ids);
  const out: Erased = { results: 0, jobs: 0, keyValueEntries: 0, deadLetters: 0, optedOut: false };
  for (const key of keys) {
    out.results += await d.cache.forgetUser(key);
    // one our schema refuses is the user's all the same (labelled with their key): deleted by name
    const { items, invalid } = await d.jobs.listOfUser(key);
    for (const name of [...items.map((j) => j.metadata.name), ...invalid.map((j) => j.name)]) if (await d.jobs.delete(name)) out.jobs++;
    out.deadLetters += await d.nats.purgeSubject(STREAMS.deadLetter, subjects.deadLetter(key));
    out.keyValueEntries += await d.nats.purgeSubject(kvStream(BUCKETS.broadcasts), kvSubject(BUCKETS.broadcasts, `notice.*.${key}`));
    await d.nats.purgeSubject(STREAMS.broadcast, subjects.broadcast("*", key));
  }
  const forgotten = await d.users.forget(keys);
  out.keyValueEntries += forgotten.entries;
  out.optedOut = forgotten.optedOut;
  if (o.optOut && !out.optedOut) {
    await d.users.optOut({ primary: keys[0] as string, all: keys });
    out.optedOut = true;
  }
  return out;
}
