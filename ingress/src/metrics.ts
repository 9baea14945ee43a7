// Prometheus metrics of the webhook and the worker. Labels are closed sets (outcomes, message types,
// status names, Meta error codes): never a phone number, a user key or a message id.
import { histogramWithExemplars } from "@unmix/core/metrics-exposition";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Message types Meta documents; anything else is counted as "other" so labels stay a closed set. */
const KNOWN_TYPES = new Set([
  "audio",
  "video",
  "text",
  "image",
  "document",
  "sticker",
  "location",
  "contacts",
  "reaction",
  "interactive",
  "button",
  "order",
  "system",
  "unsupported",
]);
export const typeLabel = (type: string) => (KNOWN_TYPES.has(type) ? type : "other");

export class Metrics {
  readonly registry = new Registry();
  readonly webhookRequests = new Counter({
    name: "unmix_webhook_requests_total",
    help: "POST /webhook requests by outcome (ok, unauthorized, bad_json, bad_shape, too_large, unavailable)",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  // the request's trace as each bucket's exemplar
  readonly webhookDuration = histogramWithExemplars(this.registry, {
    name: "unmix_webhook_request_seconds",
    help: "Time from receiving a webhook to answering it",
    labelNames: ["outcome"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  });
  readonly inboundMessages = new Counter({
    name: "unmix_webhook_messages_total",
    help: "Messages received in webhooks, by type and whether JetStream saw them before (duplicate)",
    labelNames: ["type", "duplicate"],
    registers: [this.registry],
  });
  readonly statuses = new Counter({
    name: "unmix_webhook_statuses_total",
    help: "Status receipts for the bot's messages (sent, delivered, read, failed, played)",
    labelNames: ["status"],
    registers: [this.registry],
  });
  readonly webhookErrors = new Counter({
    name: "unmix_webhook_errors_total",
    help: "Errors Meta reported in webhooks (value.errors, statuses[].errors, messages[].errors), by Meta error code",
    labelNames: ["code"],
    registers: [this.registry],
  });
  readonly publishDuration = new Histogram({
    name: "unmix_jetstream_publish_seconds",
    help: "Time for JetStream to acknowledge a publish",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly handled = new Counter({
    name: "unmix_worker_messages_total",
    help: "Messages the worker handled, by type and outcome",
    labelNames: ["type", "outcome"],
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: "unmix_worker_queue_wait_seconds",
    help: "Time a message waited in JetStream, from the webhook storing it to its first delivery to a worker (the queue's lag)",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly handleDuration = new Histogram({
    name: "unmix_worker_handle_seconds",
    help: "Time the worker took to handle a message",
    labelNames: ["outcome"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly failures = new Counter({
    name: "unmix_worker_failures_total",
    help: "Handling attempts that failed and were scheduled for redelivery",
    registers: [this.registry],
  });
  readonly deadLettered = new Counter({
    name: "unmix_worker_dead_letters_total",
    help: "Messages set aside in the dead-letter stream after their last delivery",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({ name: "unmix_worker_in_flight", help: "Messages being handled now", registers: [this.registry] });
  readonly graphErrors = new Counter({
    name: "unmix_whatsapp_api_errors_total",
    help: "WhatsApp Graph API calls that failed, by call and error kind",
    labelNames: ["call", "kind"],
    registers: [this.registry],
  });
  readonly invalidSeparationJobs = new Counter({
    name: "unmix_invalid_separationjobs_total",
    help: "SeparationJobs skipped by a list (admin job list, a user's delete) because our schema refuses them",
    registers: [this.registry],
  });

  readonly broadcastCampaigns = new Counter({
    name: "unmix_broadcast_campaigns_total",
    help: "Policy broadcast campaigns started and finished",
    labelNames: ["event"],
    registers: [this.registry],
  });
  readonly broadcastNotices = new Counter({
    name: "unmix_broadcast_notices_total",
    help: "Broadcast recipients settled, by the notice's kind (text, template, none) and outcome (sent, skipped, failed, unconfirmed)",
    labelNames: ["kind", "outcome"],
    registers: [this.registry],
  });
  readonly broadcastRetries = new Counter({
    name: "unmix_broadcast_retries_total",
    help: "Broadcast sends put back for a later retry, by Graph error kind (rate-limit, pair-rate-limit, temporary)",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly broadcastPending = new Gauge({
    name: "unmix_broadcast_pending",
    help: "Broadcast recipients still to be sent, all campaigns together (as of this worker's last look)",
    registers: [this.registry],
  });

  constructor(o: { defaultMetrics?: boolean } = {}) {
    if (o.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
