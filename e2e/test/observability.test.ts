// Observability as an SRE gets it, checked against the real thing:
// - the metrics catalogue (docs/metrics.md) against the /metrics of the running product after a
//   voice note and a few things going wrong: every catalogued metric there with its type and label
//   names, every exposed metric catalogued, and no phone number, message id or profile name in them;
// - the chart's PrometheusRule through `promtool check rules` and `promtool test rules`
//   (e2e/test/fixtures/alerts.promtool.yaml), and its Grafana dashboard: the sidecar's label, and
//   panels and alerts that query only catalogued metrics.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect, headers } from "nats";
import { parseAllDocuments, parse as parseYaml, stringify } from "yaml";
import { SIGNATURE_HEADER, signInbound } from "../../ingress/src/signing.ts";
import { type CatalogueEntry, catalogued, type Family, labelNames, parseExposition, promqlMetrics, queried, readCatalogue } from "../src/metrics-catalogue.ts";
import { INBOUND_SIGNING_KEY, type Product, startProduct, until } from "../src/product.ts";
import { BIN_DIR, REPO_ROOT } from "../src/stack/versions.ts";
import { makeMedia } from "../src/test-media.ts";

const catalogue = readCatalogue();
const work = mkdtempSync(join(tmpdir(), "unmix-observability-"));
after(() => rmSync(work, { recursive: true, force: true }));

describe("the metrics catalogue, against the running product", { timeout: 600_000 }, () => {
  let p: Product;
  /** Each component's /metrics in both formats: Prometheus text, and OpenMetrics (with exemplars). */
  const scraped: { where: string; text: string; families: Map<string, Family> }[] = [];
  const sentIds: string[] = [];

  before(async () => {
    // the GC's first pass and a watch restart early, so that their labelled series exist
    p = await startProduct({ gpus: 1, controllerEnv: { GC_INTERVAL_SECONDS: "5", WATCH_STALL_SECONDS: "3" } });
  });
  after(async () => p?.stop());

  const scrape = async (name: "ingress" | "controller", accept = "text/plain") => {
    const text = await (await fetch(`${p[name].url}/metrics`, { headers: { accept } })).text();
    return { text, families: parseExposition(text) };
  };
  /** Waits until the component's /metrics has a sample of `family` whose labels include `labels`. */
  const seen = (name: "ingress" | "controller", family: string, labels: Record<string, string> = {}) =>
    until(
      `${family} ${JSON.stringify(labels)} on the ${name}'s /metrics`,
      async () => {
        const f = (await scrape(name)).families.get(family);
        return f?.samples.some((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)) || undefined;
      },
      60_000,
      250,
    );

  test("after a voice note and a few failures, each /metrics exposes exactly the catalogue: every metric with its type and label names, nothing uncatalogued", async () => {
    const voice = makeMedia("voice", 3, 7);
    const note = await p.sim.sendUserMessage({ type: "audio", bytes: voice.bytes, mimeType: voice.mimeType, voice: true });
    sentIds.push(note.id);
    const reply = await p.sim.waitForMessage((m) => m.replyTo === note.id && m.type !== "reaction", 180_000);
    await seen("controller", "unmix_controller_separationjobs_total", { outcome: "succeeded" });
    // what goes wrong in production, each once: a forged webhook, a status receipt Meta failed, an
    // expired access token on the worker's next Graph call, a message no worker can parse
    const forged = await p.sim.deliverRaw(JSON.stringify({ object: "whatsapp_business_account", entry: [] }), { signature: "wrong" });
    assert.equal(forged[0]?.status, 401);
    await p.sim.sendReceipt({
      messageId: reply.id,
      status: "failed",
      recipient: p.sim.defaultUser.waId as string,
      error: { code: 131026, title: "Message undeliverable" },
    });
    p.sim.failNext("messages", "token-expired", 1);
    sentIds.push((await p.sim.sendUserMessage({ type: "text", body: "help" })).id);
    await seen("ingress", "unmix_whatsapp_api_errors_total", { kind: "auth" });
    // and one of the controller's: WhatsApp refuses the upload of the next result (131053)
    p.sim.failNext("media-upload", "media-rejected", 1);
    const refused = makeMedia("voice", 3, 8);
    const second = await p.sim.sendUserMessage({ type: "audio", bytes: refused.bytes, mimeType: refused.mimeType, voice: true });
    sentIds.push(second.id);
    await p.sim.waitForMessage((m) => m.replyTo === second.id && m.type === "text", 180_000);
    // signed as the webhook would (an unsigned one is dead-lettered as such, before parsing)
    const nc = await connect(p.stack.nats?.connectOptions("operator"));
    const junk = { subject: "unmix.inbound.observability-test", data: "not a message", id: "observability-test" };
    const h = headers();
    h.set(SIGNATURE_HEADER, signInbound(INBOUND_SIGNING_KEY, junk.subject, junk.id, junk.data));
    await nc.jetstream().publish(junk.subject, new TextEncoder().encode(junk.data), { msgID: junk.id, headers: h });
    await nc.close();
    await seen("ingress", "unmix_webhook_requests_total", { outcome: "unauthorized" });
    await seen("ingress", "unmix_webhook_errors_total", { code: "131026" });
    await seen("controller", "unmix_whatsapp_api_errors_total", { call: "upload_media" });
    await seen("ingress", "unmix_worker_dead_letters_total", { reason: "malformed" });
    // a policy broadcast to the users so far, its first send refused with 130429 (then retried)
    p.sim.setTemplate("policy_update", "en", "APPROVED");
    p.sim.failNext("messages", "rate-limit", 1);
    const start = await fetch(`${p.adminUrl}/admin/broadcasts`, {
      method: "POST",
      headers: { authorization: `Bearer ${p.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ template: { name: "policy_update", languageCode: "en" }, idempotencyKey: "observability" }),
    });
    assert.equal(start.status, 202);
    await seen("ingress", "unmix_broadcast_campaigns_total", { event: "finished" });
    await seen("ingress", "unmix_broadcast_retries_total", { kind: "rate-limit" });
    await seen("ingress", "unmix_broadcast_notices_total", { kind: "template", outcome: "sent" });
    await seen("controller", "unmix_controller_gc_deleted_total");
    await seen("controller", "unmix_controller_watch_restarts_total");

    const problems: string[] = [];
    for (const [name, components] of [
      ["ingress", ["webhook", "worker"]],
      ["controller", ["controller"]],
    ] as const) {
      const mine = catalogue.filter((e) => e.components.some((c) => (components as readonly string[]).includes(c)));
      for (const accept of ["text/plain", "application/openmetrics-text; version=1.0.0"]) {
        const where = `${name} (${accept.split(";")[0]})`;
        const { text, families } = await scrape(name, accept);
        scraped.push({ where, text, families });
        for (const e of mine) problems.push(...differences(e, families, where));
        for (const f of families.values())
          if (!catalogued(mine, f.name)) problems.push(`${where}: ${f.name} (${f.type}) is exposed but not in docs/metrics.md`);
      }
    }
    assert.deepEqual(problems, []);
    // the alerts' own measurements were taken: the queue's lag, the job's real-time factor
    const count = (family: string) =>
      scraped
        .find((x) => x.where.startsWith(family.includes("controller") ? "controller" : "ingress"))
        ?.families.get(family)
        ?.samples.find((s) => s.name === `${family}_count`)?.value;
    assert.ok((count("unmix_worker_queue_wait_seconds") ?? 0) >= 2, "the voice note's and the text's waits in JetStream");
    assert.equal(count("unmix_controller_separation_realtime_factor"), 1);
  });

  test("no label value on /metrics holds a phone number, a message id or a profile name", () => {
    assert.equal(scraped.length, 4, "the previous test scraped both components in both formats");
    const exemplars = scraped.flatMap((x) => [...x.families.values()].flatMap((f) => f.samples.filter((s) => s.exemplar)));
    assert.ok(exemplars.length > 0, "the OpenMetrics pages carry exemplars, and they are checked too");
    const user = p.sim.defaultUser;
    const personal = [user.waId, user.userId, user.name, p.sim.displayPhoneNumber.replace(/\D/g, ""), "wamid.", ...sentIds].filter(Boolean) as string[];
    for (const { where: name, text, families } of scraped) {
      for (const f of families.values()) {
        for (const s of f.samples) {
          for (const value of Object.values(s.labels)) {
            assert.doesNotMatch(value, /\d{8,}/, `${name}: ${s.name}${JSON.stringify(s.labels)} looks like it holds a phone number`);
          }
          for (const value of [...Object.values(s.labels), ...Object.values(s.exemplar ?? {})]) {
            for (const id of personal) assert.ok(!value.includes(id), `${name}: ${s.name}${JSON.stringify(s.labels)} holds ${id}`);
          }
        }
      }
      // and nowhere else in the page either (help texts, exemplars)
      for (const id of personal) assert.ok(!text.includes(id), `${name}'s /metrics contains ${id}`);
    }
  });
});

/** How a component's /metrics differs from one catalogue entry. */
function differences(e: CatalogueEntry, families: Map<string, Family>, component: string): string[] {
  if (e.type === "default") {
    const prefix = e.name.slice(0, -1);
    return [...families.keys()].some((n) => n.startsWith(prefix)) ? [] : [`${component}: no ${e.name} metric`];
  }
  const f = families.get(e.name);
  if (!f) return [`${component}: ${e.name} is catalogued but not exposed`];
  const out: string[] = [];
  if (f.type !== e.type) out.push(`${component}: ${e.name} is a ${f.type}, catalogued as a ${e.type}`);
  if (e.labels.length && !f.samples.length) out.push(`${component}: ${e.name} has no series, so its labels cannot be compared (drive it in this test)`);
  const labels = labelNames(f);
  if (f.samples.length && labels.join() !== [...e.labels].sort().join()) out.push(`${component}: ${e.name} has labels [${labels}], catalogued [${e.labels}]`);
  return out;
}

// ── the chart's PrometheusRule and Grafana dashboard ────────────────────────────────────────────

const CHART = join(REPO_ROOT, "charts/unmix");
const helm = join(BIN_DIR, "helm");
const promtool = join(BIN_DIR, "promtool");
/** The values every render needs (no usable defaults, on purpose). */
const REQUIRED = [
  "nats.url=nats://nats.nats.svc:4222",
  "objectStore.endpoint=http://minio.storage.svc:9000",
  "objectStore.accessKey=a",
  "objectStore.secretKey=b",
  "whatsapp.appSecret=app-secret-0123456789",
  "whatsapp.accessToken=t",
  "networkPolicy.objectStore.allowAnyDestination=true",
];

interface Rendered {
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { groups: { name: string; rules: Rule[] }[] };
  data?: Record<string, string>;
}
interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

function render(set: string[] = [], files: string[] = []): Rendered[] {
  const args = [
    "template",
    "unmix",
    CHART,
    "--namespace",
    "unmix",
    "--kube-version",
    "1.35.4",
    ...[...REQUIRED, ...set].flatMap((s) => ["--set", s]),
    ...files.flatMap((f) => ["-f", f]),
  ];
  const out = execFileSync(helm, args, {
    encoding: "utf8",
    env: { ...process.env, HELM_CACHE_HOME: join(work, "helm"), HELM_CONFIG_HOME: join(work, "helm") },
  });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Rendered)
    .filter(Boolean);
}

const rulesOf = (objects: Rendered[]) => objects.find((o) => o.kind === "PrometheusRule")?.spec?.groups ?? [];
const dashboardOf = (objects: Rendered[]) => objects.find((o) => o.kind === "ConfigMap" && o.data?.["unmix.json"]);

// room for promtool's first build (about 4 minutes on 2 cores, more on a busy machine)
describe("the chart's alerts and dashboard", { timeout: 1_800_000 }, () => {
  const objects = () => render(["metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true"]);

  before(() => {
    // promtool is built from its Go module on first use (make setup-promtool does the same)
    if (!existsSync(promtool)) execFileSync("bash", [join(REPO_ROOT, "e2e/stack/install.sh"), "promtool"], { stdio: "inherit" });
  });

  test("promtool: the rendered rules are valid, and each alert fires on its failure and stays quiet on healthy input", () => {
    const groups = rulesOf(objects());
    const rules = join(work, "rules.yaml");
    writeFileSync(rules, stringify({ groups }));
    const check = spawnSync(promtool, ["check", "rules", rules], { encoding: "utf8" });
    assert.equal(check.status, 0, `promtool check rules:\n${check.stdout}${check.stderr}`);
    const cases = readFileSync(join(REPO_ROOT, "e2e/test/fixtures/alerts.promtool.yaml"), "utf8");
    writeFileSync(join(work, "alerts.test.yaml"), cases);
    const t = spawnSync(promtool, ["test", "rules", join(work, "alerts.test.yaml")], { encoding: "utf8" });
    assert.equal(t.status, 0, `promtool test rules:\n${t.stdout}${t.stderr}`);
    // every alert is tested both ways: a case where it fires, and one where it must not
    const tests = (parseYaml(cases) as { tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests.flatMap(
      (x) => x.alert_rule_test,
    );
    const alerts = groups.flatMap((g) => g.rules.map((r) => r.alert));
    assert.equal(alerts.length, 10);
    for (const a of alerts) {
      assert.ok(
        tests.some((x) => x.alertname === a && x.exp_alerts.length > 0),
        `${a}: no case where it fires`,
      );
      assert.ok(
        tests.some((x) => x.alertname === a && x.exp_alerts.length === 0),
        `${a}: no case where it must not fire`,
      );
    }
  });

  test("every alert has a severity, a summary and a description, and a runbook note in the chart README", () => {
    const readme = readFileSync(join(CHART, "README.md"), "utf8");
    const alerts = readme.slice(readme.indexOf("### Alerts"));
    for (const r of rulesOf(objects()).flatMap((g) => g.rules)) {
      assert.match(r.labels.severity ?? "", /^(critical|warning|info)$/, r.alert);
      assert.ok(r.annotations.summary && r.annotations.description, `${r.alert}: summary and description`);
      assert.match(
        alerts,
        new RegExp(`\\| \`${r.alert}\` \\|[^\\n]{40,}`),
        `${r.alert}: a row with a runbook note under "### Alerts" in charts/unmix/README.md`,
      );
    }
  });

  test("the dashboard is a ConfigMap for Grafana's sidecar, and it and the alerts query only catalogued metrics; each alert's metrics have a panel", () => {
    const all = objects();
    const cm = dashboardOf(all);
    assert.equal(cm?.metadata.labels?.grafana_dashboard, "1");
    const dashboard = JSON.parse(cm?.data?.["unmix.json"] ?? "{}") as { uid: string; panels: { type: string; title: string; targets?: { expr: string }[] }[] };
    assert.equal(dashboard.uid, "unmix");
    const panels = dashboard.panels.filter((x) => x.type !== "row");
    assert.ok(panels.length >= 10);
    const unknown: string[] = [];
    const onPanels = new Set<string>();
    for (const panel of panels) {
      assert.ok(panel.targets?.length, `${panel.title}: no query`);
      for (const t of panel.targets ?? []) {
        for (const m of promqlMetrics(t.expr)) {
          const e = queried(catalogue, m);
          if (!e) unknown.push(`panel "${panel.title}": ${m}`);
          else onPanels.add(e.name);
        }
      }
    }
    for (const r of rulesOf(all).flatMap((g) => g.rules)) {
      for (const m of promqlMetrics(r.expr)) {
        const e = queried(catalogue, m);
        if (!e) unknown.push(`alert ${r.alert}: ${m}`);
        else assert.ok(onPanels.has(e.name), `alert ${r.alert} reads ${e.name}, which no dashboard panel shows`);
      }
    }
    assert.deepEqual(unknown, [], "queries of metrics that are not in docs/metrics.md");
  });

  test("both are off by default; their labels, the alerts' labels and the thresholds come from values", () => {
    const plain = render();
    assert.equal(rulesOf(plain).length, 0);
    assert.equal(dashboardOf(plain), undefined);
    const custom = render([
      "metrics.prometheusRule.enabled=true",
      "metrics.prometheusRule.labels.release=prometheus",
      "metrics.prometheusRule.alertLabels.team=media",
      "metrics.prometheusRule.runbookUrl=https://runbooks.example.com/unmix",
      "metrics.prometheusRule.thresholds.replyLatencySeconds=90",
      "metrics.grafanaDashboard.enabled=true",
      "metrics.grafanaDashboard.annotations.grafana_folder=unmix",
    ]);
    assert.equal(custom.find((o) => o.kind === "PrometheusRule")?.metadata.labels?.release, "prometheus");
    const rules = rulesOf(custom).flatMap((g) => g.rules);
    for (const r of rules) {
      assert.equal(r.labels.team, "media", r.alert);
      assert.equal(r.annotations.runbook_url, "https://runbooks.example.com/unmix", r.alert);
    }
    assert.match(rules.find((r) => r.alert === "UnmixReplyLatencyHigh")?.expr ?? "", /> 90$/);
    assert.equal(dashboardOf(custom)?.metadata.annotations?.grafana_folder, "unmix");
    // the CPU profile expects DeepFilterNet3's slower separation
    const cpu = rulesOf(render(["metrics.prometheusRule.enabled=true"], [join(CHART, "values-cpu.yaml")])).flatMap((g) => g.rules);
    assert.match(cpu.find((r) => r.alert === "UnmixSeparationSlow")?.expr ?? "", /> 0\.5$/);
  });
});
