// Policy broadcasts (P15) as durable campaigns on JetStream, not loops inside a request:
//   unmix_broadcasts  campaign.<id>         the campaign: its notice, state, plan and progress counts
//                     notice.<id>.<userKey> one recipient's outcome (sending, retry, sent, skipped,
//                                           failed, unconfirmed): each user gets one notice per campaign
//   UNMIX_BROADCAST   unmix.broadcast.<id>.<userKey>  a recipient still to be sent (work queue, empty
//                                           body: the address is read from unmix_active at send time)
// Starting plans who gets what (broadcast-plan.ts), writes the campaign, then the recipients; the
// campaign id is a hash of the operator's idempotency key, so a repeated start finds it and does
// nothing. The "broadcaster" consumer in every worker sends at BROADCAST_MESSAGES_PER_SECOND. A
// recipient's record is written as `sending` BEFORE the Graph call and as its outcome after: a
// redelivery that finds `sending` (the worker died between the two) records `unconfirmed` and
// never sends again. So a notice goes out at most once; the window in which a crash can lose one
// is a single Graph call per worker (at most the client's 15 s timeout). A campaign is Finished
// once no recipient is left in the stream; its counts are then recounted from the records.
import { createHash } from "node:crypto";
import type { Logger } from "@unmix/core/log";
import { scrubText } from "@unmix/core/privacy";
import { GraphApiError, type WhatsAppClient } from "@unmix/core/whatsapp";
import { afterFailure, type NoticeContent, type NoticeKind, noticeFor, type Pace, type Plan, pauseUntil, refusal, takeSlot, tally } from "./broadcast-plan.ts";
import type { Metrics } from "./metrics.ts";
import { BROADCAST_CONSUMER, BUCKETS, type JsMsg, type KV, kvStream, kvSubject, type Nats, STREAMS, subjects } from "./nats.ts";
import type { UserState } from "./users.ts";

export type CampaignState = "Preparing" | "Sending" | "Finished";

export interface Campaign {
  id: string;
  state: CampaignState;
  notice: NoticeContent;
  operator: string;
  /** Every active user when it started, opted-out ones included. */
  total: number;
  planned: Plan;
  sent: number;
  skipped: number;
  failed: number;
  /** Sent as the worker died: maybe delivered, never repeated. */
  unconfirmed: number;
  /** Notices sent, by kind. */
  byKind: Record<NoticeKind, number>;
  startedAt: string;
  finishedAt?: string;
}

type Outcome = "sent" | "skipped" | "failed" | "unconfirmed";
type NoticeRecord = { state: "sending" | "retry"; kind: NoticeKind } | { state: Outcome; kind?: NoticeKind; reason?: string };

export interface BroadcastOptions {
  /** Notices per second this worker sends (WhatsApp's throughput per business number is shared with replies). */
  perSecond: number;
  /** Sends per recipient before it counts as failed. */
  maxAttempts: number;
  maxRetryDelayMs: number;
  /** WHATSAPP_BUSINESS_ACCOUNT_ID: whose templates the approval check reads. */
  businessAccountId?: string;
}

export interface BroadcastDeps {
  nats: Nats;
  users: UserState;
  whatsapp: WhatsAppClient;
  metrics: Metrics;
  log: Logger;
  now?: () => number;
}

/** A start that cannot go ahead: nothing was written. */
export class StartRefused extends Error {
  readonly status: number;
  readonly details: Record<string, unknown>;
  constructor(status: number, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "StartRefused";
    this.status = status;
    this.details = details;
  }
}

/** The campaign an idempotency key names (a hash: the key is the operator's free text). */
export const campaignId = (idempotencyKey: string) => `bc-${createHash("sha256").update(idempotencyKey).digest("hex").slice(0, 24)}`;
export const CAMPAIGN_ID = /^bc-[0-9a-f]{24}$/;

/** Recipients published at once when a campaign starts (acknowledgements awaited per batch). */
const PUBLISH_BATCH = 256;
const campaignKey = (id: string) => `campaign.${id}`;
const noticeKey = (id: string, userKey: string) => `notice.${id}.${userKey}`;
const FINAL = new Set<string>(["sent", "skipped", "failed", "unconfirmed"]);
const decode = <T>(bytes: Uint8Array): T => JSON.parse(Buffer.from(bytes).toString("utf8")) as T;
const encode = (v: unknown) => JSON.stringify(v);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const conflict = (err: unknown) => /wrong last sequence|key exists/i.test((err as Error).message);
const sameNotice = (a: NoticeContent, b: NoticeContent) => JSON.stringify([a.text, a.template]) === JSON.stringify([b.text, b.template]);

export class Broadcasts {
  private readonly d: BroadcastDeps;
  private readonly o: BroadcastOptions;
  private readonly now: () => number;
  private pace: Pace = { nextAt: 0 };
  private stopping = false;
  private loop?: Promise<void>;
  private messages?: { stop(): void };

  constructor(d: BroadcastDeps, o: BroadcastOptions) {
    this.d = d;
    this.o = o;
    this.now = d.now ?? Date.now;
  }

  private kv(): Promise<KV> {
    return this.d.nats.kv(BUCKETS.broadcasts);
  }

  /**
   * The bucket's keys under `prefix`, from the stream's subject counts: kv.keys() (an ordered
   * consumer) once listed 1 of this bucket's 51 keys in a stack test (nats.js 2.29; not reproduced
   * alone), and a campaign's counts must not depend on it.
   */
  private async keys(prefix: string): Promise<string[]> {
    const base = kvSubject(BUCKETS.broadcasts, "");
    const info = await this.d.nats.jsm.streams.info(kvStream(BUCKETS.broadcasts), { subjects_filter: `${base}${prefix}>` });
    return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(base.length));
  }

  // ── planning and starting ───────────────────────────────────────────────────────────────────

  /** Who would get what now, and the keys of those who would get something. */
  async plan(notice: NoticeContent): Promise<{ plan: Plan; recipients: string[] }> {
    const decisions = [];
    const recipients: string[] = [];
    for await (const user of this.d.users.activeUsers()) {
      const optedOut = await this.d.users.isOptedOut({ primary: user.key, all: [user.key] });
      const decision = noticeFor(notice, { lastSeen: user.lastSeen, optedOut }, this.now());
      decisions.push(decision);
      if ("send" in decision) recipients.push(user.key);
    }
    return { plan: tally(decisions), recipients };
  }

  /** Throws StartRefused unless the notice's template exists in its language and is APPROVED. */
  /** The approved templates an operator may pick; none without WHATSAPP_BUSINESS_ACCOUNT_ID. */
  async templates(): Promise<{ name: string; languageCode: string }[]> {
    return this.o.businessAccountId ? this.d.whatsapp.approvedTemplates(this.o.businessAccountId) : [];
  }

  async checkTemplate(notice: NoticeContent): Promise<void> {
    const t = notice.template;
    if (!t) return;
    if (!this.o.businessAccountId)
      throw new StartRefused(400, "WHATSAPP_BUSINESS_ACCOUNT_ID is not set, so the template's approval cannot be checked: nothing was sent");
    let status: string | undefined;
    try {
      status = await this.d.whatsapp.templateStatus(this.o.businessAccountId, t.name, t.languageCode);
    } catch (err) {
      const code = err instanceof GraphApiError ? ` (${err.kind}${err.code !== undefined ? ` ${err.code}` : ""})` : "";
      throw new StartRefused(502, `the template's approval could not be checked with the WhatsApp API${code}: nothing was sent`);
    }
    if (status === undefined) throw new StartRefused(400, `there is no template "${t.name}" in language "${t.languageCode}"`, { template: "missing" });
    if (status !== "APPROVED")
      throw new StartRefused(400, `the template "${t.name}" (${t.languageCode}) is ${status}, not APPROVED`, { template: status.toLowerCase() });
  }

  /**
   * Starts the campaign of this idempotency key, or returns the one it already started (`created`
   * false). Throws StartRefused when the template is not approved, when a text-only notice cannot
   * reach everyone, or when the key was used for another notice.
   */
  async start(notice: NoticeContent, idempotencyKey: string, operator: string): Promise<{ campaign: Campaign; created: boolean }> {
    const id = campaignId(idempotencyKey);
    const existing = await this.get(id);
    if (existing) return { campaign: this.same(existing, notice), created: false };
    await this.checkTemplate(notice);
    const { plan, recipients } = await this.plan(notice);
    const refused = refusal(notice, plan);
    if (refused) throw new StartRefused(400, refused, { counts: plan });
    const campaign: Campaign = {
      id,
      state: "Preparing",
      notice,
      operator,
      total: recipients.length + plan.optedOut,
      planned: plan,
      sent: 0,
      skipped: plan.optedOut,
      failed: 0,
      unconfirmed: 0,
      byKind: { text: 0, template: 0 },
      startedAt: new Date(this.now()).toISOString(),
    };
    try {
      await (await this.kv()).create(campaignKey(id), encode(campaign));
    } catch (err) {
      if (!conflict(err)) throw err;
      const raced = await this.get(id); // the same start, at the same moment
      if (raced) return { campaign: this.same(raced, notice), created: false };
      throw err;
    }
    this.d.metrics.broadcastCampaigns.inc({ event: "started" });
    return { campaign: await this.enqueue(campaign, recipients), created: true };
  }

  private same(existing: Campaign, notice: NoticeContent): Campaign {
    if (!sameNotice(existing.notice, notice))
      throw new StartRefused(409, "this idempotency key already started a campaign with another notice", { id: existing.id, state: existing.state });
    return existing;
  }

  /** Writes the recipients (again after a crash: deduplicated by id, and by their records after the window), then Sending. */
  private async enqueue(c: Campaign, recipients: string[]): Promise<Campaign> {
    for (let i = 0; i < recipients.length; i += PUBLISH_BATCH)
      await Promise.all(
        recipients.slice(i, i + PUBLISH_BATCH).map((key) => this.d.nats.publish(subjects.broadcast(c.id, key), "", { msgId: `${c.id}.${key}` })),
      );
    const sending = await this.update(c.id, (x) => (x.state === "Preparing" ? { ...x, state: "Sending" } : undefined));
    await this.finishIfDone(c.id);
    return (await this.get(c.id)) ?? sending ?? c;
  }

  async get(id: string): Promise<Campaign | undefined> {
    const e = await (await this.kv()).get(campaignKey(id));
    return e?.operation === "PUT" ? decode<Campaign>(e.value) : undefined;
  }

  /** Every campaign still kept, newest first. */
  async list(): Promise<Campaign[]> {
    const ids = (await this.keys("campaign.")).map((k) => k.slice("campaign.".length));
    const all = await Promise.all(ids.map((id) => this.get(id)));
    return all.filter((c): c is Campaign => !!c).sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  /**
   * Whether a recipient of the campaign is still in the stream (waiting, in flight or waiting for a
   * retry): one direct get of the first message on its subjects, whatever the campaign's size.
   */
  private async anyLeft(id: string): Promise<boolean> {
    const { nats } = this.d;
    this.d.metrics.broadcastPending.set((await nats.jsm.streams.info(STREAMS.broadcast)).state.messages);
    return nats.hasMessage(STREAMS.broadcast, subjects.broadcast(id, "*"));
  }

  /** Compare-and-set on the campaign record; `change` returning undefined leaves it as it is. */
  private async update(id: string, change: (c: Campaign) => Campaign | undefined): Promise<Campaign | undefined> {
    const kv = await this.kv();
    for (let attempt = 0; attempt < 50; attempt++) {
      const e = await kv.get(campaignKey(id));
      if (e?.operation !== "PUT") return undefined;
      const next = change(decode<Campaign>(e.value));
      if (!next) return undefined;
      try {
        await kv.update(campaignKey(id), encode(next), e.revision);
        return next;
      } catch (err) {
        if (!conflict(err)) throw err; // another worker counted at the same moment: read again
      }
    }
    throw new Error(`campaign ${id}: too much contention on its record`);
  }

  /** Once nothing is left to send: the counts recounted from the recipients' records, Finished, audited. */
  private async finishIfDone(id: string): Promise<void> {
    const c = await this.get(id);
    if (c?.state !== "Sending" || (await this.anyLeft(id))) return;
    const kv = await this.kv();
    const counts = { sent: 0, skipped: 0, failed: 0, unconfirmed: 0, byKind: { text: 0, template: 0 } };
    for (const k of await this.keys(`notice.${id}.`)) {
      const e = await kv.get(k);
      if (e?.operation !== "PUT") continue;
      const r = decode<NoticeRecord>(e.value);
      // a record left mid-way with its recipient gone (the stream's max age) was never confirmed
      const outcome: Outcome = FINAL.has(r.state) ? (r.state as Outcome) : "unconfirmed";
      counts[outcome]++;
      if (outcome === "sent" && r.kind) counts.byKind[r.kind]++;
    }
    // the opted-out ones never had a record, and an erased user's went with their data (erase.ts)
    counts.skipped = c.total - counts.sent - counts.failed - counts.unconfirmed;
    const done = await this.update(id, (x) =>
      x.state === "Sending" ? { ...x, ...counts, state: "Finished", finishedAt: new Date(this.now()).toISOString() } : undefined,
    );
    if (!done) return;
    this.d.metrics.broadcastCampaigns.inc({ event: "finished" });
    const { sent, skipped, failed, unconfirmed, byKind } = done;
    await this.d.nats.audit(
      { event: "admin", action: "broadcast-finished", operator: done.operator, counts: { total: done.total, sent, skipped, failed, unconfirmed, ...byKind } },
      `${id}.finished`,
    );
    this.d.log.info({ campaign: id, sent, skipped, failed, unconfirmed }, "broadcast campaign finished");
  }

  // ── sending ─────────────────────────────────────────────────────────────────────────────────

  /** Resumes campaigns a crash left half-written, then consumes recipients until stop(). */
  async startSending(): Promise<void> {
    for (const c of await this.list()) {
      if (c.state === "Preparing") {
        this.d.log.warn({ campaign: c.id }, "resuming a broadcast campaign whose recipients were not all written");
        await this.enqueue(c, (await this.plan(c.notice)).recipients);
      } else if (c.state === "Sending") await this.finishIfDone(c.id);
    }
    const consumer = await this.d.nats.js.consumers.get(STREAMS.broadcast, BROADCAST_CONSUMER);
    this.loop = (async () => {
      while (!this.stopping) {
        try {
          const messages = await consumer.consume({ max_messages: 1 });
          this.messages = messages;
          for await (const msg of messages) {
            if (this.stopping) {
              msg.nak();
              continue;
            }
            await this.deliver(msg).catch((err) => this.failed(msg, err));
          }
        } catch (err) {
          if (this.stopping) break;
          this.d.log.warn({ err: { message: (err as Error).message } }, "broadcast consuming stopped; starting again");
          await sleep(1000);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.messages?.stop();
    await this.loop;
  }

  /** Handling failed outside the Graph call (NATS, a record that does not parse): retried a few times, then `failed`. */
  private async failed(msg: JsMsg, err: unknown): Promise<void> {
    const deliveries = msg.info.deliveryCount;
    const error = { message: scrubText((err as Error).message) };
    if (deliveries < this.o.maxAttempts) {
      this.d.log.warn({ err: error, deliveries }, "broadcast recipient not handled; retrying");
      msg.nak(1000 * deliveries);
      return;
    }
    this.d.log.error({ err: error, deliveries }, "broadcast recipient not handled after its last attempt: counted as failed");
    const [, , id = "", key = ""] = msg.subject.split(".");
    try {
      await (await this.kv()).put(noticeKey(id, key), encode({ state: "failed" } satisfies NoticeRecord));
      await msg.ackAck();
      this.d.metrics.broadcastNotices.inc({ kind: "none", outcome: "failed" });
      await this.finishIfDone(id);
    } catch {
      msg.nak(30_000); // NATS itself is failing: the record cannot be written, so nothing is dropped
    }
  }

  private async deliver(msg: JsMsg): Promise<void> {
    const [, , id = "", key = ""] = msg.subject.split(".");
    const campaign = await this.get(id);
    if (!campaign) {
      msg.term(); // its campaign is gone (expired): nothing to send it for
      return;
    }
    const kv = await this.kv();
    const entry = await kv.get(noticeKey(id, key));
    const record = entry?.operation === "PUT" ? decode<NoticeRecord>(entry.value) : undefined;
    const write = (r: NoticeRecord, revision: number | undefined) =>
      revision === undefined ? kv.create(noticeKey(id, key), encode(r)) : kv.update(noticeKey(id, key), encode(r), revision);
    const settle = async (r: NoticeRecord & { state: Outcome }, revision: number | undefined) => {
      await write(r, revision);
      await msg.ackAck();
      this.d.metrics.broadcastNotices.inc({ kind: r.kind ?? "none", outcome: r.state });
      await this.update(id, (c) => ({
        ...c,
        [r.state]: c[r.state] + 1,
        byKind: r.state === "sent" && r.kind ? { ...c.byKind, [r.kind]: c.byKind[r.kind] + 1 } : c.byKind,
      }));
      await this.finishIfDone(id);
    };
    if (record && FINAL.has(record.state)) {
      await msg.ackAck(); // done before a crash, or a copy written again after the duplicate window
      await this.finishIfDone(id);
      return;
    }
    // a concurrent copy in another worker loses the compare-and-set on the record
    const revision = entry?.operation === "PUT" ? entry.revision : undefined;
    if (record?.state === "sending") {
      // the worker died between the send and its outcome: maybe delivered, so never sent again
      this.d.log.warn({ campaign: id }, "broadcast notice unconfirmed: its worker stopped during the send");
      return settle({ state: "unconfirmed", kind: record.kind }, revision);
    }
    const user = await this.d.users.activeUser(key);
    const optedOut = await this.d.users.isOptedOut({ primary: key, all: [key] });
    const decision = user ? noticeFor(campaign.notice, { lastSeen: user.lastSeen, optedOut }, this.now()) : ({ skip: "inactive" } as const);
    if ("skip" in decision || !user) return settle({ state: "skipped", reason: "skip" in decision ? decision.skip : "inactive" }, revision);
    if (!(await this.waitForSlot(msg))) {
      msg.nak(); // stopping: another worker (or this one, restarted) sends it
      return;
    }
    const kind = decision.send;
    const sending = await write({ state: "sending", kind }, revision);
    const to = { ...(user.waId ? { waId: user.waId } : {}), ...(user.userId ? { userId: user.userId } : {}) };
    const { text, template } = campaign.notice;
    try {
      if (kind === "text") await this.d.whatsapp.sendText(user.phoneNumberId, to, text as string, { callbackData: id });
      else if (template) await this.d.whatsapp.sendTemplate(user.phoneNumberId, to, template);
    } catch (err) {
      const attempt = msg.info.deliveryCount - 1;
      const e = err instanceof GraphApiError ? err : undefined;
      const next = afterFailure(
        {
          kind: e?.kind ?? "unknown",
          retryable: e?.retryable ?? false,
          delayMs: (n) => e?.retryDelayMs(n),
          timedOut: !!e && e.status === 0 && (e.cause as Error | undefined)?.name === "TimeoutError",
        },
        attempt,
        this.o.maxAttempts,
        this.o.maxRetryDelayMs,
      );
      this.d.metrics.graphErrors.inc({ call: "broadcast", kind: e?.kind ?? "unknown" });
      if (!next.retry) {
        this.d.log.warn({ campaign: id, kind, code: e?.code, attempt }, "broadcast notice not sent");
        return settle({ state: next.outcome, kind }, sending);
      }
      if (next.throttle) this.pace = pauseUntil(this.pace, this.now() + next.delayMs);
      await write({ state: "retry", kind }, sending);
      this.d.metrics.broadcastRetries.inc({ kind: e?.kind ?? "unknown" });
      this.d.log.info({ campaign: id, code: e?.code, attempt, delayMs: next.delayMs }, "broadcast notice rate-limited; retrying later");
      msg.nak(next.delayMs);
      return;
    }
    await settle({ state: "sent", kind }, sending);
  }

  /**
   * Waits for this worker's next send slot, telling JetStream it is still at it during a long wait;
   * false when the worker began stopping meanwhile.
   */
  private async waitForSlot(msg: JsMsg): Promise<boolean> {
    const slot = takeSlot(this.pace, this.now(), this.o.perSecond);
    this.pace = slot.pace;
    for (let left = slot.waitMs; left > 0 && !this.stopping; left -= 1000) {
      await sleep(Math.min(left, 1000));
      msg.working();
    }
    return !this.stopping;
  }
}
