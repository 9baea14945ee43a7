// The pure decisions of a policy broadcast (P15), apart from JetStream and the Graph API so they are
// tested in milliseconds: who gets what (text inside the 24-hour window, the template outside it,
// nothing when opted out), whether a campaign may start, when the next notice may go (the pacer),
// and what a failed send means (retry later, slow the whole campaign down, or give up).

/** Meta's customer-service window: outside it only an approved template may be sent. */
export const WINDOW_MS = 24 * 3600_000;
/** Leave a margin: a text sent as the window closes fails with 131047. */
export const WINDOW_MARGIN_MS = 10 * 60_000;

export interface NoticeContent {
  text?: string;
  template?: { name: string; languageCode: string; bodyParameters?: string[] };
}

export type NoticeKind = "text" | "template";
export type SkipReason = "opted-out" | "outside-window" | "inactive";
export type Decision = { send: NoticeKind } | { skip: SkipReason };

/** What a user gets: the text while their window is open (with a margin), else the template. */
export function noticeFor(n: NoticeContent, user: { lastSeen: number; optedOut: boolean }, now: number): Decision {
  if (user.optedOut) return { skip: "opted-out" };
  const inWindow = now - user.lastSeen < WINDOW_MS - WINDOW_MARGIN_MS;
  if (n.text && inWindow) return { send: "text" };
  if (n.template) return { send: "template" };
  return { skip: "outside-window" };
}

/** Who would get what: the dry run's answer and the counts a start is audited with. */
export interface Plan {
  text: number;
  template: number;
  optedOut: number;
  /** Users a text-only notice cannot reach (their window is closed). */
  outsideWindow: number;
}

export function tally(decisions: Iterable<Decision>): Plan {
  const plan: Plan = { text: 0, template: 0, optedOut: 0, outsideWindow: 0 };
  for (const d of decisions) {
    if ("send" in d) plan[d.send]++;
    else if (d.skip === "opted-out") plan.optedOut++;
    else if (d.skip === "outside-window") plan.outsideWindow++;
  }
  return plan;
}

/** Why a campaign may not start with this plan, or undefined. */
export function refusal(n: NoticeContent, plan: Plan): string | undefined {
  if (!n.template && plan.outsideWindow > 0)
    return `${plan.outsideWindow} recipient(s) are outside the 24-hour window, where only an approved template may be sent: add a template`;
  return undefined;
}

/**
 * Spacing of sends at `perSecond` (WhatsApp's throughput per business number is shared with the
 * replies): the next send waits for its slot; a throughput error (130429) pushes every later slot
 * back. `nextAt` is the earliest time of the next send.
 */
export interface Pace {
  nextAt: number;
}

export function takeSlot(p: Pace, now: number, perSecond: number): { waitMs: number; pace: Pace } {
  const at = Math.max(now, p.nextAt);
  return { waitMs: at - now, pace: { nextAt: at + 1000 / perSecond } };
}

export function pauseUntil(p: Pace, until: number): Pace {
  return { nextAt: Math.max(p.nextAt, until) };
}

/** What a send's failure means (a GraphApiError's fields; `timedOut`: no answer, it may have been sent). */
export interface SendFailure {
  kind: string;
  retryable: boolean;
  /** The error's own wait before retry n (0-based): 4^n s for the pair rate, exponential otherwise. */
  delayMs: (attempt: number) => number | undefined;
  timedOut: boolean;
}

export type AfterFailure =
  /** Try this user again after `delayMs`; `throttle`: slow the whole campaign down too. */
  | { retry: true; delayMs: number; throttle: boolean }
  /** `unconfirmed`: the request may have reached WhatsApp, so it is never sent again (at most once). */
  | { retry: false; outcome: "failed" | "unconfirmed" };

/** `attempt` is 0 for the first send; at most `maxAttempts` sends per user. */
export function afterFailure(f: SendFailure, attempt: number, maxAttempts: number, maxDelayMs: number): AfterFailure {
  if (f.timedOut) return { retry: false, outcome: "unconfirmed" };
  const delay = f.retryable ? f.delayMs(attempt) : undefined;
  if (delay === undefined || attempt + 1 >= maxAttempts) return { retry: false, outcome: "failed" };
  return { retry: true, delayMs: Math.min(delay, maxDelayMs), throttle: f.kind === "rate-limit" };
}
