// How the lifecycle reads the Graph API's errors: pure, tabled in fetch.test.ts and reply.test.ts.
import type { GraphApiError } from "@unmix/core/whatsapp";
import type { Classification } from "./classify.ts";

/**
 * What a failed call to WhatsApp means for the SeparationJob: it fails, the call is retried after a
 * delay, or (not an answer from WhatsApp at all) the work queue's back-off decides when to retry.
 */
export type AfterError = { outcome: "fail"; failure: Classification } | { outcome: "retry"; afterMs: number; why: string } | { outcome: "backOff" };

/** An auth or permission error is about our token, not about the user's media or number: retried until someone fixes the token. */
export const ourToken = (e: GraphApiError) => e.kind === "auth" || e.kind === "permission";
