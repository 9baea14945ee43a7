// Erasing what is stored about a user (policy promises P13 and P14): the cached results they
// received (and their copies in WhatsApp's media store), their SeparationJobs (the controller
// removes their inputs), their recent activity and their dead letters. Kept, with no message
// reference: an opt-out (a stop holds) and this hour's bare job count (the limit holds); and the
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
  /** The user's stop is kept. */
  optedOut: boolean;
}

export interface EraseDeps {
  users: UserState;
  cache: ResultCache;
  jobs: SeparationJobs;
  nats: Nats;
}

export async function eraseUser(ids: { waId?: string; userId?: string }, d: EraseDeps): Promise<Erased> {
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
  return out;
}
