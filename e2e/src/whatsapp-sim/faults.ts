// Meta's error shape, the errors the product must handle, and the queue a test fills to make the
// next calls of a route fail or stall.
import { randomBytes } from "node:crypto";

/** The simulator's Graph routes, as named for fault injection. */
export type SimRoute = "media-info" | "media-download" | "media-upload" | "media-delete" | "messages" | "message-templates";

export interface MetaError {
  httpStatus: number;
  code: number;
  message: string;
  type?: string;
  subcode?: number;
  details?: string;
}

/** The errors named in the product's brief, as Meta sends them (reference §8). */
export const META_ERRORS = {
  "token-expired": {
    httpStatus: 401,
    code: 190,
    subcode: 463,
    message: "Error validating access token: Session has expired.",
  },
  "invalid-token": { httpStatus: 401, code: 190, message: "Invalid OAuth access token - Cannot parse access token" },
  "rate-limit": {
    httpStatus: 400,
    code: 130429,
    message: "(#130429) Rate limit hit",
    details: "Cloud API message throughput has been reached.",
  },
  "pair-rate-limit": {
    httpStatus: 400,
    code: 131056,
    message: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    details: "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
  },
  "media-rejected": {
    httpStatus: 400,
    code: 131053,
    message: "(#131053) Media upload error",
    details: "Unable to upload the media used in the message.",
  },
  "temporarily-unavailable": { httpStatus: 503, code: 133004, message: "(#133004) Server temporarily unavailable" },
  "template-unavailable": {
    httpStatus: 400,
    code: 132001,
    message: "(#132001) Template name does not exist in the translation",
    details: "template name does not exist in the language or is not approved",
  },
} satisfies Record<string, MetaError>;
export type MetaErrorName = keyof typeof META_ERRORS;

export const invalidParameter = (details: string): MetaError => ({ httpStatus: 400, code: 100, message: "(#100) Invalid parameter", details });
export const unknownObject = (id: string, method: "get" | "post" | "delete"): MetaError => ({
  httpStatus: 400,
  code: 100,
  subcode: 33,
  type: "GraphMethodException",
  message: `Unsupported ${method} request. Object with ID '${id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
});

export function metaErrorBody(e: MetaError) {
  return {
    error: {
      message: e.message,
      type: e.type ?? "OAuthException",
      code: e.code,
      ...(e.details ? { error_data: { messaging_product: "whatsapp", details: e.details } } : {}),
      ...(e.subcode ? { error_subcode: e.subcode } : {}),
      fbtrace_id: randomBytes(12).toString("base64url"),
    },
  };
}

/** A failure: one of Meta's errors, or a bare HTTP status (the lookaside host answers 404 without a body). */
export type Fault = MetaErrorName | MetaError | { httpStatus: number };

export class FaultQueue {
  private readonly failures = new Map<SimRoute, Fault[]>();
  private readonly delays = new Map<SimRoute, number[]>();

  failNext(route: SimRoute, fault: Fault, times: number): void {
    this.failures.set(route, [...(this.failures.get(route) ?? []), ...Array<Fault>(times).fill(fault)]);
  }

  /** Drops every queued failure and delay. */
  clear(): void {
    this.failures.clear();
    this.delays.clear();
  }

  delayNext(route: SimRoute, ms: number, times: number): void {
    this.delays.set(route, [...(this.delays.get(route) ?? []), ...Array<number>(times).fill(ms)]);
  }

  /** Waits out a queued delay, then hands back the queued failure, if any. */
  async take(route: SimRoute): Promise<MetaError | { httpStatus: number } | undefined> {
    const delay = this.delays.get(route)?.shift();
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const fault = this.failures.get(route)?.shift();
    return typeof fault === "string" ? META_ERRORS[fault] : fault;
  }
}
