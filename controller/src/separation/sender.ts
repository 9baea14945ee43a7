// Who to reply to: the number, user id and message id live in the SeparationJob's sender Secret
// (crds/src/separationjob.ts, Sender), not on the resource the `view` role reads. The ingress
// creates it just after the SeparationJob; a crash in between is repaired by the message's
// redelivery, so a SeparationJob without one is waited for, then failed with a clear reason.
import { Sender, type SeparationJob, senderSecretName } from "@unmix/api/separationjob";
import { RetryAfter } from "../framework/workqueue.ts";
import type { StepContext } from "./context.ts";
import * as S from "./status.ts";

export async function readSender(ctx: StepContext, sj: SeparationJob): Promise<Sender | undefined> {
  const data = await ctx.kube.secrets.get(senderSecretName(sj.metadata.name));
  const r = Sender.safeParse(data ?? {});
  return r.success ? r.data : undefined;
}

/**
 * The sender, before any work is done for the message. Missing: retried until FETCH_DEADLINE_SECONDS
 * after the SeparationJob's creation (the worker's redeliveries come within it), then the
 * SeparationJob fails (Internal) and resolves undefined: there is nobody to do the work for.
 */
export async function requireSender(ctx: StepContext, sj: SeparationJob): Promise<Sender | undefined> {
  const sender = await readSender(ctx, sj);
  if (sender) return sender;
  const now = ctx.clock();
  const age = now.getTime() - Date.parse(sj.metadata.creationTimestamp ?? now.toISOString());
  const deadline = ctx.config.flow.fetchDeadlineMs;
  if (age < deadline) throw new RetryAfter(Math.min(5000, deadline - age), `waiting for the sender Secret ${senderSecretName(sj.metadata.name)}`);
  const message = `no valid sender Secret ${senderSecretName(sj.metadata.name)} within ${Math.round(deadline / 1000)} s: nobody to reply to`;
  await ctx.write(sj, S.failed(sj, now, { class: "Internal", message }));
  return undefined;
}
