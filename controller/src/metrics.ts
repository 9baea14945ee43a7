// Prometheus metrics of the controller. Label values come from fixed sets (steps, outcomes, failure
// classes, verbs): never a name, a phone number or anything else a user controls.
import { histogramWithExemplars } from "@unmix/core/metrics-exposition";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** The steps of a SeparationJob whose durations are measured (step_duration_seconds). */
export type Step = "fetch" | "queue" | "separate" | "reply" | "total";

/** `waitingForGpu` counts, when scraped, the SeparationJobs whose GPU Job waits for a node. */
export function createMetrics(o: { waitingForGpu?: () => number } = {}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "unmix_controller_" });
  const m = {
    registry,
    queueDepth: new Gauge({ name: "unmix_controller_workqueue_depth", help: "SeparationJob keys waiting in the work queue", registers: [registry] }),
    queueInFlight: new Gauge({ name: "unmix_controller_workqueue_in_flight", help: "Keys being reconciled now", registers: [registry] }),
    queueRetries: new Counter({
      name: "unmix_controller_workqueue_retries_total",
      help: "Keys put back with back-off after a failed reconcile",
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: "unmix_controller_reconcile_duration_seconds",
      help: "Time of one reconcile pass, by the step it took and its result",
      labelNames: ["action", "result"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    jobs: new Counter({
      name: "unmix_controller_separationjobs_total",
      help: "Finished SeparationJobs by outcome (succeeded, failed) and reason (Succeeded, a failure class, ReplyFailed, ReplyUnconfirmed)",
      labelNames: ["outcome", "reason"],
      registers: [registry],
    }),
    // the message's trace as each bucket's exemplar, so a slow bucket links to a trace that shows where the time went
    stepSeconds: histogramWithExemplars(registry, {
      name: "unmix_controller_step_duration_seconds",
      help: "Time spent in each step of a SeparationJob: fetch (created to media stored), queue (Job created to pod scheduled), separate (scheduled to result read), reply (result to reply sent), total (message sent to reply sent)",
      labelNames: ["step"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800],
    }),
    realTimeFactor: new Histogram({
      name: "unmix_controller_separation_realtime_factor",
      help: "Seconds of separation per second of media of each succeeded SeparationJob, as the job reported it (below 1: faster than real time)",
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [registry],
    }),
    waitingForGpu: new Gauge({
      name: "unmix_controller_separationjobs_waiting_for_gpu",
      help: "SeparationJobs whose Job exists but whose pod is not scheduled yet (no free GPU, or Kueue holds it); only the leader counts",
      registers: [registry],
      collect() {
        if (o.waitingForGpu) this.set(o.waitingForGpu());
      },
    }),
    replies: new Counter({
      name: "unmix_controller_replies_total",
      help: "Replies sent to WhatsApp by kind (Result, Failure)",
      labelNames: ["kind"],
      registers: [registry],
    }),
    // the same name as the worker's: the token-expired alert sums both
    graphErrors: new Counter({
      name: "unmix_whatsapp_api_errors_total",
      help: "WhatsApp Graph API calls that failed, by call and error kind",
      labelNames: ["call", "kind"],
      registers: [registry],
    }),
    kubeRequests: new Counter({
      name: "unmix_controller_kube_requests_total",
      help: "Requests to the Kubernetes API server by verb",
      labelNames: ["verb"],
      registers: [registry],
    }),
    watchRestarts: new Counter({
      name: "unmix_controller_watch_restarts_total",
      help: "Watches restarted, by resource and reason",
      labelNames: ["resource", "reason"],
      registers: [registry],
    }),
    relists: new Counter({ name: "unmix_controller_relists_total", help: "Full lists of a resource", labelNames: ["resource"], registers: [registry] }),
    leader: new Gauge({ name: "unmix_controller_is_leader", help: "1 while this replica holds the lease", registers: [registry] }),
    gcDeleted: new Counter({
      name: "unmix_controller_gc_deleted_total",
      help: "Objects removed by the garbage collector, by kind",
      labelNames: ["kind"],
      registers: [registry],
    }),
  };
  return m;
}
export type Metrics = ReturnType<typeof createMetrics>;
