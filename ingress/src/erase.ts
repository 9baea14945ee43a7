// Erasing everything stored about a user (policy promises P13 and P14): the cached results they
// received, their SeparationJobs (the controller's finalizer, if any, cleans their inputs), their
// key-value entries (opt-out, rate limit, recent activity) and their dead letters. The same code
// serves the `delete` command and the admin purge. Messages still queued in the inbound stream are
// left alone: they are handled within seconds, and one sent just after `delete` must not vanish.
import type { SeparationJobs } from "@unmix/core/kube";
import type { ResultCache } from "@unmix/core/result-cache";
import { type Nats, STREAMS, subjects } from "./nats.ts";
import type { UserState } from "./users.ts";

export interface Erased {
  results: number;
  jobs: number;
  keyValueEntries: number;
  deadLetters: number;
}

export interface EraseDeps {
  users: UserState;
  cache: ResultCache;
  jobs: SeparationJobs;
  nats: Nats;
}

export async function eraseUser(ids: { waId?: string; userId?: string }, d: EraseDeps): Promise<Erased> {
  const keys = await d.users.resolve(ids);
  const out: Erased = { results: 0, jobs: 0, keyValueEntries: 0, deadLetters: 0 };
  for (const key of keys) {
    out.results += await d.cache.forgetUser(key);
    // one our schema refuses is the user's all the same (labelled with their key): deleted by name
    const { items, invalid } = await d.jobs.listOfUser(key);
    for (const name of [...items.map((j) => j.metadata.name), ...invalid.map((j) => j.name)]) if (await d.jobs.delete(name)) out.jobs++;
    out.deadLetters += await d.nats.purgeSubject(STREAMS.deadLetter, subjects.deadLetter(key));
  }
  out.keyValueEntries = await d.users.forget(keys);
  return out;
}
