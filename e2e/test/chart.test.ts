// The Helm chart (charts/unmix), checked the way an SRE would use it:
// - statically: helm lint, the values schema, the CRD copy, kube-score, secure defaults, RBAC, and
//   that every variable the chart sets is one the services read;
// - on the real local stack: `helm template | kubectl apply --dry-run=server` against the real API
//   server, then `helm install` with the ingress, worker and controller pods running through the
//   local node agent (image name → `node <service>/src/main.ts`) until their readiness probes pass,
//   `helm test`, `helm upgrade` with changed values (it must roll), `helm uninstall` (the CRD stays)
//   and a reinstall over what was kept.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import * as k8s from "@kubernetes/client-node";
import { SUPPORT_RESOURCE, SUPPORT_VERBS } from "@unmix/api/support";
import { OperatorAccess } from "@unmix/core/operator-access";
import { parseAllDocuments, parse as parseYaml, stringify } from "yaml";
import { renderedJob } from "../src/rendered-chart.ts";
import { type Stack, startStack } from "../src/stack/index.ts";
import { BIN_DIR, REPO_ROOT } from "../src/stack/versions.ts";
import { startWhatsAppSimulator, type WhatsAppSimulator } from "../src/whatsapp-sim/index.ts";

const CHART = join(REPO_ROOT, "charts/unmix");
const KUBE_VERSION = "1.35.4";
const helm = join(BIN_DIR, "helm");
const kubectl = join(BIN_DIR, "kubectl");
const kubeScore = join(BIN_DIR, "kube-score");
const work = mkdtempSync(join(tmpdir(), "unmix-chart-"));
after(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a tool with a timeout; never throws (callers assert on the code and show the output). */
function run(cmd: string, args: string[], o: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(work, "helm-cache"),
        HELM_CONFIG_HOME: join(work, "helm-config"),
        HELM_DATA_HOME: join(work, "helm-data"),
        ...o.env,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 120_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(o.input ?? "");
  });
}

const ok = (r: Run, what: string) => assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);

function valuesFile(name: string, values: unknown): string {
  const file = join(work, `${name}.yaml`);
  writeFileSync(file, stringify(values));
  return file;
}

/** What every install needs (the chart has no usable defaults for these, on purpose). */
const REQUIRED = {
  nats: { url: "nats://nats.nats.svc:4222" },
  objectStore: { endpoint: "http://minio.storage.svc:9000", accessKey: "access-key", secretKey: "secret-key-123" },
  whatsapp: { appSecret: "app-secret-0123456789", accessToken: "EAAG-access-token" },
  networkPolicy: { objectStore: { to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "storage" } } }] } },
};

/** Everything optional switched on, so every template renders. */
const EVERYTHING = {
  ...REQUIRED,
  nats: { url: "nats://nats.nats.svc:4222", auth: { mode: "creds" }, creds: "-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n" },
  telemetry: { otlpEndpoint: "http://otel-collector.observability.svc:4318", resourceAttributes: "deployment.environment=test" },
  job: {
    runtimeClassName: "nvidia",
    priorityClassName: "gpu-batch",
    kueue: { queueName: "gpu" },
    nodeSelector: { "nvidia.com/gpu.product": "NVIDIA-L4" },
    demucs: { segment: "7" },
  },
  expose: {
    httpRoute: { enabled: true, parentRefs: [{ name: "public", namespace: "gateway-system", sectionName: "https" }], hostnames: ["unmix.example.com"] },
    ingress: { enabled: true, className: "nginx", host: "unmix.example.com", tls: [{ hosts: ["unmix.example.com"], secretName: "unmix-tls" }] },
  },
  metrics: { serviceMonitor: { enabled: true, labels: { release: "prometheus" } }, prometheusRule: { enabled: true, labels: { release: "prometheus" } } },
  networkPolicy: { ...REQUIRED.networkPolicy, telemetry: { to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "observability" } } }] } },
};

/** Rendered manifests are read field by field: their specs are left untyped. */
// biome-ignore lint/suspicious/noExplicitAny: a rendered object of any kind
type Loose = any;
type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Loose;
  data?: Record<string, string>;
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[];
};

async function render(values: unknown, extra: string[] = [], name = "unmix", namespace = "unmix"): Promise<{ text: string; objects: Obj[] }> {
  const r = await run(helm, [
    "template",
    name,
    CHART,
    "--namespace",
    namespace,
    "--kube-version",
    KUBE_VERSION,
    "-f",
    valuesFile(`v-${Date.now()}`, values),
    ...extra,
  ]);
  ok(r, "helm template");
  const objects = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);
  return { text: r.stdout, objects };
}

const podSpecs = (objects: Obj[]) =>
  objects.flatMap((o) =>
    o.kind === "Deployment"
      ? [{ name: `Deployment/${o.metadata.name}`, spec: o.spec.template.spec }]
      : o.kind === "Pod"
        ? [{ name: `Pod/${o.metadata.name}`, spec: o.spec }]
        : [],
  );

describe("chart, statically", () => {
  test("helm lint passes with the required values, with everything on, and with the worker folded into the webhook (ROLE=all)", async () => {
    for (const [name, values] of [
      ["required", REQUIRED],
      ["everything", EVERYTHING],
      ["role-all", { ...REQUIRED, worker: { enabled: false } }],
    ] as const) {
      const r = await run(helm, ["lint", CHART, "--strict", "--kube-version", KUBE_VERSION, "-f", valuesFile(`lint-${name}`, values)]);
      ok(r, `helm lint (${name})`);
    }
  });

  test("without the required values, rendering stops with messages naming them", async () => {
    const r = await run(helm, ["template", "unmix", CHART, "--kube-version", KUBE_VERSION]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nats\.url is required|objectStore|whatsapp\.appSecret/);
    const open = await run(helm, [
      "template",
      "unmix",
      CHART,
      "--kube-version",
      KUBE_VERSION,
      "-f",
      valuesFile("no-objectstore-peers", { ...REQUIRED, networkPolicy: {} }),
    ]);
    assert.notEqual(open.code, 0, "an empty networkPolicy.objectStore.to must not render silently");
    assert.match(open.stderr, /networkPolicy\.objectStore\.to is empty/);
  });

  test("values.schema.json rejects unknown keys and wrong types, at any depth", async () => {
    const cases: [string, string][] = [
      ["replicas=2", "additional properties 'replicas'"],
      ["ingress.replicas=2", "additional properties 'replicas'"],
      ["job.gpu.resource=nvidia.com/gpu", "additional properties 'resource'"],
      ["job.resources.requests.gpu=1", "additional properties 'gpu'"],
      ["controller.replicaCount=two", "want integer"],
      ["job.gpu.count=-1", "minimum"],
      ["logLevel=verbose", "value must be one of"],
      ["job.image.digest=latest", "does not match pattern"],
      ["limits.processedIdsTtlSeconds=3600", "minimum"],
      ["limits.cacheTtlSeconds=86401", "maximum"],
      ["controller.maxAgeSeconds.unfinished=90000", "maximum"],
    ];
    for (const [set, message] of cases) {
      const r = await run(helm, ["template", "unmix", CHART, "--kube-version", KUBE_VERSION, "-f", valuesFile("schema", REQUIRED), "--set", set]);
      assert.notEqual(r.code, 0, `--set ${set} was accepted`);
      assert.ok(r.stderr.includes(message), `--set ${set}: expected "${message}" in:\n${r.stderr}`);
    }
    const str = await run(helm, [
      "template",
      "unmix",
      CHART,
      "--kube-version",
      KUBE_VERSION,
      "-f",
      valuesFile("schema", REQUIRED),
      "--set-string",
      "worker.concurrency=8",
    ]);
    assert.notEqual(str.code, 0, "a string where an integer belongs was accepted");
  });

  test("the chart's CRD is byte for byte the generated crds/separationjobs.unmix.dev.yaml, and renders with keep", async () => {
    const generated = readFileSync(join(REPO_ROOT, "crds/separationjobs.unmix.dev.yaml"), "utf8");
    const copy = readFileSync(join(CHART, "files/crds/separationjobs.unmix.dev.yaml"), "utf8");
    assert.equal(copy, generated, "charts/unmix/files/crds/ is stale: cp crds/separationjobs.unmix.dev.yaml charts/unmix/files/crds/");
    const { objects } = await render(REQUIRED);
    const crd = objects.find((o) => o.kind === "CustomResourceDefinition");
    assert.ok(crd);
    assert.deepEqual(crd.spec, parseYaml(generated).spec, "the rendered CRD's spec is the generated one");
    assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], "keep");
    const off = await render({ ...REQUIRED, crds: { enabled: false } });
    assert.ok(!off.objects.some((o) => o.kind === "CustomResourceDefinition"));
    const unkept = await render({ ...REQUIRED, crds: { keep: false } });
    assert.equal(unkept.objects.find((o) => o.kind === "CustomResourceDefinition")?.metadata.annotations?.["helm.sh/resource-policy"], undefined);
  });

  test("kube-score: no critical finding beyond the two documented in the chart README", async () => {
    for (const values of [EVERYTHING, { ...REQUIRED, worker: { enabled: false } }]) {
      const { text } = await render(values);
      const file = join(work, "kube-score.yaml");
      writeFileSync(file, text);
      // the two deliberate departures (README "kube-score"): no CPU limits on latency-sensitive
      // services, and IfNotPresent for images pinned by tag or digest
      const r = await run(kubeScore, ["score", file, "--output-format", "ci", "--ignore-container-cpu-limit", "--ignore-test", "container-image-pull-policy"]);
      const critical = r.stdout.split("\n").filter((l) => l.startsWith("[CRITICAL]"));
      assert.deepEqual(critical, [], r.stdout);
      const all = await run(kubeScore, ["score", file, "--output-format", "ci"]);
      const others = all.stdout
        .split("\n")
        .filter((l) => l.startsWith("[CRITICAL]"))
        .filter((l) => !/CPU limit is not set|ImagePullPolicy is not set to Always/.test(l));
      assert.deepEqual(others, [], "only the two documented findings without the flags");
    }
  });

  test("secure defaults: every pod non-root with seccomp, every container read-only, no privilege escalation, no capabilities, with resources; services with probes", async () => {
    for (const values of [EVERYTHING, { ...REQUIRED, worker: { enabled: false } }]) {
      const { objects } = await render(values);
      const pods = podSpecs(objects);
      assert.equal(pods.length, values === EVERYTHING ? 4 : 3);
      for (const { name, spec } of pods) {
        assert.equal(spec.securityContext?.runAsNonRoot, true, name);
        assert.equal(spec.securityContext?.seccompProfile?.type, "RuntimeDefault", name);
        assert.equal(spec.hostNetwork ?? false, false, name);
        for (const c of spec.containers) {
          const sc = c.securityContext ?? {};
          assert.equal(sc.readOnlyRootFilesystem, true, `${name} ${c.name}`);
          assert.equal(sc.allowPrivilegeEscalation, false, `${name} ${c.name}`);
          assert.equal(sc.runAsNonRoot, true, `${name} ${c.name}`);
          assert.deepEqual(sc.capabilities?.drop, ["ALL"], `${name} ${c.name}`);
          assert.equal(sc.capabilities?.add, undefined, `${name} ${c.name}`);
          assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory, `${name} ${c.name} resources`);
          assert.match(c.image, /:[0-9A-Za-z._-]+(@sha256:[0-9a-f]{64})?$/, `${name} ${c.name}: image pinned by tag`);
          if (name.startsWith("Deployment/")) {
            assert.equal(c.readinessProbe?.httpGet?.path, "/readyz", `${name} readiness`);
            assert.equal(c.livenessProbe?.httpGet?.path, "/healthz", `${name} liveness`);
            assert.ok(c.startupProbe, `${name} startup`);
          }
        }
      }
      const webhook = pods.find((p) => p.name.endsWith("-ingress"));
      if (values === EVERYTHING) {
        assert.equal(webhook?.spec.automountServiceAccountToken, false, "the webhook needs no Kubernetes token");
        const env = (webhook?.spec.containers[0].env ?? []).map((e: { name: string }) => e.name);
        for (const secret of ["WHATSAPP_ACCESS_TOKEN", "S3_SECRET_KEY", "ADMIN_TOKEN"]) assert.ok(!env.includes(secret), `the webhook must not see ${secret}`);
      }
    }
    const pinned = await render({ ...REQUIRED, ingress: { image: { tag: "1.2.3", digest: `sha256:${"a".repeat(64)}` } } });
    const ingress = pinned.objects.find((o) => o.kind === "Deployment" && o.metadata.name.endsWith("-ingress"));
    assert.equal(ingress?.spec.template.spec.containers[0].image, `ghcr.io/unmix/ingress:1.2.3@sha256:${"a".repeat(64)}`);
  });

  test("RBAC is namespaced and least-privilege but for operator access: no wildcards, the expected verbs", async () => {
    const { objects } = await render(EVERYTHING);
    // cluster-wide only what operator access needs: the worker creates token and access reviews, and two roles to bind operators to
    const clusterRoles = Object.fromEntries(objects.filter((o) => o.kind === "ClusterRole").map((o) => [o.metadata.name, o.rules]));
    assert.deepEqual(clusterRoles, {
      "unmix-unmix-admin-reviews": [
        { apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"] },
        { apiGroups: ["authorization.k8s.io"], resources: ["subjectaccessreviews"], verbs: ["create"] },
      ],
      "unmix-unmix-support-viewer": [{ apiGroups: ["unmix.dev"], resources: ["support"], verbs: ["list", "get"] }],
      // every verb the admin listener asks about (crds/src/support.ts)
      "unmix-unmix-support-operator": [{ apiGroups: [SUPPORT_RESOURCE.group], resources: [SUPPORT_RESOURCE.resource], verbs: [...SUPPORT_VERBS] }],
    });
    const bindings = objects.filter((o) => o.kind === "ClusterRoleBinding") as Loose[];
    assert.deepEqual(
      bindings.map((b) => [b.roleRef.name, b.subjects]),
      [["unmix-unmix-admin-reviews", [{ kind: "ServiceAccount", namespace: "unmix", name: "unmix-worker" }]]],
    );
    for (const o of objects.filter((o) => o.kind === "ClusterRole"))
      assert.ok(!o.metadata.labels?.["rbac.authorization.k8s.io/aggregate-to-view"], "the support roles are not aggregated into view (profile names)");
    // the shared static token needs no review: nothing cluster-wide then
    const { objects: staticToken } = await render({ ...EVERYTHING, admin: { auth: "static-token" } });
    assert.ok(!staticToken.some((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding"));
    const roles = Object.fromEntries(objects.filter((o) => o.kind === "Role").map((o) => [o.metadata.name.replace(/^unmix-/, ""), o.rules ?? []]));
    for (const rules of Object.values(roles)) for (const r of rules) assert.ok(![...r.apiGroups, ...r.resources, ...r.verbs].includes("*"), JSON.stringify(r));
    const can = (role: string, resource: string) => new Set((roles[role] ?? []).filter((r) => r.resources.includes(resource)).flatMap((r) => r.verbs));
    assert.deepEqual([...can("worker", "separationjobs")].sort(), ["create", "delete", "get", "list", "patch", "watch"]);
    assert.deepEqual([...can("controller", "separationjobs")].sort(), ["delete", "get", "list", "watch"]);
    assert.deepEqual([...can("controller", "separationjobs/status")], ["patch"]);
    assert.deepEqual([...can("controller", "separationjobs/finalizers")], []);
    assert.deepEqual([...can("controller", "pods")].sort(), ["list", "watch"]);
    // with a Kueue queue (EVERYTHING names one): list Kueue's Workloads, to say why Kueue holds a Job
    assert.deepEqual([...can("controller", "workloads")], ["list"]);
    // the sender Secrets (worker: written with the SeparationJob, read for the admin list) and the Jobs' URL Secrets
    assert.deepEqual([...can("worker", "secrets")].sort(), ["create", "get"]);
    assert.deepEqual([...can("controller", "secrets")].sort(), ["create", "delete", "get", "update"]);
    assert.ok(can("controller", "jobs").has("create") && can("controller", "events").has("create") && can("controller", "leases").has("update"));
    const leaseUpdate = roles.controller?.find((r) => r.resources.includes("leases") && r.verbs.includes("update"));
    assert.deepEqual(leaseUpdate?.resourceNames, ["unmix-controller"], "the controller may update only its own Lease");
    assert.ok(!can("worker", "jobs").size && !can("worker", "pods").size, "the worker touches no Jobs or Pods");
  });

  test("the admin listener is on 127.0.0.1 unless exposed, and exposing it needs a NetworkPolicy naming who may reach it", async () => {
    const envOf = (objects: Obj[], name: string) =>
      (objects.find((o) => o.kind === "Deployment" && o.metadata.name === name)?.spec.template.spec.containers[0].env ?? []) as {
        name: string;
        value?: string;
      }[];
    const ingressRules = (objects: Obj[], name: string) => objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name === name)?.spec.ingress as Loose[];
    const { objects } = await render(REQUIRED);
    assert.ok(!envOf(objects, "unmix-worker").some((e) => e.name === "ADMIN_HOST"), "ADMIN_HOST unset: the ingress's default, 127.0.0.1");
    assert.ok(!envOf(objects, "unmix-worker").some((e) => e.name === "ADMIN_TOKEN"), "no shared token with admin.auth=kubernetes");
    assert.ok(!ingressRules(objects, "unmix-worker").some((r) => r.ports?.some((p: { port: string }) => p.port === "admin")), "no rule opens the admin port");
    for (const [values, message] of [
      [{ admin: { expose: { enabled: true } } }, /admin.expose.enabled needs admin.expose.from/],
      [
        { admin: { expose: { enabled: true, from: [{ podSelector: {} }] } }, networkPolicy: { enabled: false } },
        /admin.expose.enabled needs networkPolicy.enabled/,
      ],
    ] as const) {
      const r = await run(helm, ["template", "unmix", CHART, "--kube-version", KUBE_VERSION, "-f", valuesFile("expose", { ...REQUIRED, ...values })]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, message);
    }
    const from = [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "sre" } }, podSelector: { matchLabels: { app: "console-proxy" } } }];
    for (const [values, component] of [
      [{}, "worker"],
      [{ worker: { enabled: false } }, "ingress"],
    ] as const) {
      const exposed = (await render({ ...REQUIRED, ...values, admin: { expose: { enabled: true, from } } })).objects;
      assert.equal(envOf(exposed, `unmix-${component}`).find((e) => e.name === "ADMIN_HOST")?.value, "0.0.0.0");
      const admin = ingressRules(exposed, `unmix-${component}`).filter((r) => r.ports?.some((p: { port: string }) => p.port === "admin"));
      assert.deepEqual(admin, [{ ports: [{ port: "admin", protocol: "TCP" }], from }], component);
    }
  });

  test("the CPU-only profile (values-cpu.yaml): DeepFilterNet3 jobs with no GPU request and no GPU toleration, run as the controller builds them", async () => {
    const jobPod = async (extra: string[]) => {
      const { objects } = await render(REQUIRED, extra);
      const job = renderedJob(objects) as Loose;
      const pod = job.spec.template.spec;
      const env = Object.fromEntries(pod.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]));
      return { pod, env, resources: pod.containers[0].resources };
    };
    const cpu = await jobPod(["-f", join(CHART, "values-cpu.yaml")]);
    assert.deepEqual([cpu.env.MODEL_NAME, cpu.env.DEVICE], ["dfn3", "cpu"]);
    assert.ok(!JSON.stringify(cpu.resources).includes("nvidia.com/gpu"), `no GPU asked for: ${JSON.stringify(cpu.resources)}`);
    assert.deepEqual(cpu.pod.tolerations ?? [], []);
    // the default stays Demucs on a GPU, as the data policy says
    const gpu = await jobPod([]);
    assert.equal(gpu.env.MODEL_NAME, "htdemucs");
    assert.equal(gpu.resources.limits["nvidia.com/gpu"], "1");
    // a CPU limit on both: decoding a hostile video cannot take the node's cores
    assert.deepEqual([gpu.resources.limits.cpu, cpu.resources.limits.cpu], ["4", "2"]);
    assert.ok(gpu.pod.tolerations.some((t: { key: string }) => t.key === "nvidia.com/gpu"));
  });

  test("P8: the job NetworkPolicy selects the labels the controller puts on job pods, and lets them reach only DNS and the object store", async () => {
    const { objects } = await render(REQUIRED);
    const np = objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name === "unmix-job");
    assert.ok(np);
    const jobs = readFileSync(join(REPO_ROOT, "controller/src/separation/job-spec.ts"), "utf8");
    const managedBy = /export const MANAGED_BY = "([^"]+)"/.exec(jobs)?.[1];
    const name = /"app\.kubernetes\.io\/name": "([^"]+)"/.exec(jobs)?.[1];
    assert.deepEqual(np.spec.podSelector.matchLabels, { "app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": managedBy });
    assert.deepEqual(np.spec.ingress, []);
    assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"], "egress is restricted, not left open");
    assert.equal(np.spec.egress.length, 2, "DNS and the object store, nothing else");
    assert.deepEqual(np.spec.egress[0].to, [
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } }, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } },
    ]);
    assert.deepEqual(new Set(np.spec.egress[0].ports.map((p: { port: number }) => p.port)), new Set([53]), "the DNS rule is for DNS only");
    assert.deepEqual(np.spec.egress[1].to, REQUIRED.networkPolicy.objectStore.to);
  });

  test("every variable the chart sets is one the services read (ingress/, controller/, core/ sources)", async () => {
    const sources = ["ingress/src", "controller/src", "core/src"]
      .flatMap((dir) => {
        const full = join(REPO_ROOT, dir);
        return existsSync(full) ? readdirTs(full) : [];
      })
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    for (const values of [EVERYTHING, { ...REQUIRED, worker: { enabled: false } }]) {
      const { objects } = await render(values);
      const names = new Set<string>();
      for (const cm of objects.filter((o) => o.kind === "ConfigMap")) for (const k of Object.keys(cm.data ?? {})) names.add(k);
      for (const { name, spec } of podSpecs(objects))
        if (name.startsWith("Deployment/")) for (const c of spec.containers) for (const e of c.env ?? []) names.add(e.name);
      const unread = [...names].filter((n) => !n.startsWith("OTEL_") && !new RegExp(`\\b${n}\\b`).test(sources));
      assert.deepEqual(unread, [], "variables no service reads (renamed on one side?)");
    }
    // Helm reads numbers from values files as floats: a million seconds must not become "1e+06"
    const { objects } = await render({
      ...REQUIRED,
      limits: { retentionSeconds: 31536000 },
      worker: { backoffSeconds: [5, 1.5, 2000000] },
    });
    const values = objects.filter((o) => o.kind === "ConfigMap").flatMap((o) => Object.entries(o.data ?? {}));
    assert.deepEqual(
      values.filter(([, v]) => /\de[+-]?\d/.test(v) && !/^[{[]/.test(v)),
      [],
    );
    assert.ok(values.some(([k, v]) => k === "SJ_RETENTION_SECONDS" && v === "31536000"));
    assert.ok(values.some(([k, v]) => k === "WORKER_BACKOFF_SECONDS" && v === "5,1.5,2000000"));
  });

  test("NATS credentials are required: by default each component has its own user, the NATS server accepts the rendered users and permissions, and `none` is an explicit opt-out", async () => {
    ok(await run(process.execPath, [join(CHART, "scripts/nats-permissions.ts"), "--check"]), "files/nats-permissions.json is up to date");
    for (const [values, users] of [
      // Deployment → [its NATS user, the key of its password]
      [REQUIRED, { ingress: ["unmix-webhook", "webhook"], worker: ["unmix-worker", "worker"], controller: ["unmix-controller", "controller"] }],
      [
        { ...REQUIRED, worker: { enabled: false } },
        { ingress: ["unmix-ingress", "ingress"], controller: ["unmix-controller", "controller"] },
      ],
    ] as const) {
      const { objects } = await render(values);
      const config = (c: string) => objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === `unmix-${c}`)?.data ?? {};
      for (const [component, [user, key]] of Object.entries(users)) {
        assert.equal(config(component).NATS_USER, user, `${component}'s own NATS user`);
        const spec = podSpecs(objects).find((p) => p.name === `Deployment/unmix-${component}`)?.spec;
        const password = spec.containers[0].env.find((e: { name: string }) => e.name === "NATS_PASSWORD");
        assert.deepEqual(password?.valueFrom?.secretKeyRef, { name: "unmix-nats-users", key });
      }
      // the authorization block the NATS server is given: valid for nats-server, one user per component
      const conf = objects.find((o) => o.kind === "Secret" && o.metadata.name === "unmix-nats-authorization") as Obj & { stringData: Record<string, string> };
      const file = join(work, `authorization-${Date.now()}.conf`);
      writeFileSync(file, conf.stringData["authorization.conf"] as string);
      ok(await run(join(BIN_DIR, "nats-server"), ["-c", file, "-t"]), "nats-server accepts the rendered authorization block");
      for (const u of ["unmix-webhook", "unmix-worker", "unmix-controller", "unmix-ingress"])
        assert.match(conf.stringData["authorization.conf"] as string, new RegExp(`user: "${u}"`));
    }
    // no way to run without credentials by leaving something out: only the explicit opt-out
    const none = await render({ ...REQUIRED, nats: { ...REQUIRED.nats, auth: { mode: "none" } } });
    assert.ok(!none.objects.some((o) => o.metadata.name.startsWith("unmix-nats")), "no NATS Secrets with mode none");
    assert.ok(!none.objects.some((o) => o.kind === "ConfigMap" && o.data?.NATS_USER));
    const r = await run(helm, [
      "template",
      "unmix",
      CHART,
      "--kube-version",
      KUBE_VERSION,
      "-f",
      valuesFile("creds-without", { ...REQUIRED, nats: { ...REQUIRED.nats, auth: { mode: "creds" } } }),
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nats\.auth\.mode is creds: set nats\.creds or nats\.existingSecret/);
  });

  test("the values table in charts/unmix/README.md is generated from values.yaml and up to date", async () => {
    const r = await run(process.execPath, [join(CHART, "scripts/values-table.ts"), "--check"]);
    ok(r, "values-table --check");
  });
});

function readdirTs(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? readdirTs(p) : p.endsWith(".ts") ? [p] : [];
  });
}

// ── on the real local stack ──────────────────────────────────────────────────────────────────

const MAINS = ["ingress/src/main.ts", "controller/src/main.ts"].map((m) => join(REPO_ROOT, m));
const missing = MAINS.filter((m) => !existsSync(m));
/** The release's workload pods (not the helm test pod, which a failed test leaves behind). */
const RELEASE_PODS = "app.kubernetes.io/instance=unmix,app.kubernetes.io/component!=test";
const blocked = missing.length ? `blocked: ${missing.map((m) => m.slice(REPO_ROOT.length + 1)).join(", ")} missing` : false;

describe("chart, on the real local stack", { timeout: 900_000 }, () => {
  let stack: Stack;
  let sim: WhatsAppSimulator;
  let kubeconfig: string;
  let kc: k8s.KubeConfig;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  const NS = "unmix";
  /** The stack NATS users' passwords, made by the test before the install (nats.auth.existingSecret). */
  const NATS_SECRET = "unmix-nats-stack";
  const APP_SECRET = "chart-test-app-secret";
  const ACCESS_TOKEN = "chart-test-access-token";

  before(async () => {
    const node = { node: [process.execPath] };
    stack = await startStack({
      gpus: 1,
      images: {
        "ghcr.io/unmix/ingress": {
          entrypoint: [process.execPath, "--import", join(REPO_ROOT, "ingress/src/telemetry.ts"), join(REPO_ROOT, "ingress/src/main.ts")],
          commands: node,
          cwd: REPO_ROOT,
        },
        "ghcr.io/unmix/controller": {
          entrypoint: [process.execPath, "--import", join(REPO_ROOT, "controller/src/telemetry.ts"), join(REPO_ROOT, "controller/src/main.ts")],
          commands: node,
          cwd: REPO_ROOT,
        },
      },
    });
    sim = await startWhatsAppSimulator({ appSecret: APP_SECRET, accessToken: ACCESS_TOKEN });
    kubeconfig = stack.kube?.kubeconfigPath as string;
    kc = stack.kube?.kc as k8s.KubeConfig;
    core = kc.makeApiClient(k8s.CoreV1Api);
    apps = kc.makeApiClient(k8s.AppsV1Api);
  });
  after(async () => {
    await sim?.stop();
    await stack?.stop();
  });

  const k = (args: string[], o: { input?: string; timeoutMs?: number } = {}) => run(kubectl, ["--kubeconfig", kubeconfig, ...args], o);
  const h = (args: string[], timeoutMs = 300_000) => run(helm, ["--kubeconfig", kubeconfig, ...args], { timeoutMs });

  /** The values of a local install: the stack's NATS and MinIO, the simulator as the Graph API. */
  const localValues = (extra: Record<string, unknown> = {}) => ({
    // every pod shares this machine: each listens on its own pod IP (127.1.x.y)
    listenAddress: "podIP",
    // the stack's NATS users (the same permissions as the chart's files/nats-permissions.json), their passwords in NATS_SECRET
    nats: {
      url: stack.nats?.url,
      auth: { mode: "users", existingSecret: NATS_SECRET, users: { webhook: "webhook", worker: "worker", controller: "controller", ingress: "ingress" } },
    },
    objectStore: {
      endpoint: stack.s3?.endpoint,
      region: stack.s3?.region,
      bucket: "unmix-chart",
      accessKey: stack.s3?.accessKey,
      secretKey: stack.s3?.secretKey,
    },
    whatsapp: { apiUrl: sim.baseUrl, apiVersion: sim.version, appSecret: APP_SECRET, accessToken: ACCESS_TOKEN, verifyToken: "chart-test-verify-token" },
    // no metrics server or HPA controller here: fixed replica counts
    ingress: { autoscaling: { enabled: false }, replicaCount: 1, service: { port: 8080 } },
    worker: { replicaCount: 1 },
    controller: { replicaCount: 2 },
    networkPolicy: { objectStore: { to: [{ ipBlock: { cidr: "127.0.0.1/32" } }] } },
    // every pod shares this machine's 127.0.0.1: two workers (the upgrade) could not both listen there
    admin: { expose: { enabled: true, from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "sre" } } }] } },
    ...extra,
  });

  test("helm template | kubectl apply --dry-run=server: the API server accepts every object (optional CRDs from minimal stand-ins)", async () => {
    ok(await k(["create", "namespace", "unmix-dry"]), "create namespace");
    ok(
      await k(["apply", "-f", join(REPO_ROOT, "e2e/test/fixtures/chart-optional-crds.yaml")]),
      "install the HTTPRoute, ServiceMonitor and PrometheusRule stand-in CRDs",
    );
    ok(
      await k([
        "wait",
        "--for=condition=Established",
        "crd/httproutes.gateway.networking.k8s.io",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "--timeout=60s",
      ]),
      "CRDs established",
    );
    // the helm test pod runs after the release exists: its ServiceAccount must exist for admission
    for (const sa of ["unmix-worker", "unmix-ingress"]) ok(await k(["create", "serviceaccount", sa, "-n", "unmix-dry"]), `create ${sa}`);
    for (const [name, values] of [
      ["everything", EVERYTHING],
      ["role-all", { ...REQUIRED, worker: { enabled: false } }],
    ] as const) {
      const { text, objects } = await render(values, [], "unmix", "unmix-dry");
      const r = await k(["apply", "--dry-run=server", "--validate=strict", "-f", "-"], { input: text });
      ok(r, `kubectl apply --dry-run=server (${name})`);
      const accepted = r.stdout.split("\n").filter((l) => /\(server dry run\)$/.test(l));
      assert.equal(accepted.length, objects.length, `every rendered object accepted (${name}):\n${r.stdout}`);
    }
    // and a misspelt field in an optional object is caught by the stand-in schema
    const { text } = await render(EVERYTHING, [], "unmix", "unmix-dry");
    const bad = text.replace("sectionName: https", "sectionNme: https");
    const r = await k(["apply", "--dry-run=server", "--validate=strict", "-f", "-"], { input: bad });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /sectionNme/);
  });

  test("RBAC on the real API server: `kubectl auth can-i --list` of each account is exactly what the code calls", async () => {
    // What each account may do beyond what every service account may (discovery, self-reviews): one
    // line per rule as `kubectl auth can-i --list` prints it, "resource [names] verbs" (verbs sorted).
    // Each is a call in the code: controller/src/framework/kube/api.ts and the informers (list+watch),
    // core/src/kube.ts SeparationJobs as the ingress uses it (create, list, delete; get on AlreadyExists; watch for the console's live list; its sender Secrets: create, get).
    // and the reviews the admin listener asks for (ingress/src/admin-auth.ts via core/src/operator-access.ts)
    const WORKER = [
      "secrets [] create get",
      "separationjobs.unmix.dev [] create delete get list patch watch",
      "subjectaccessreviews.authorization.k8s.io [] create",
      "tokenreviews.authentication.k8s.io [] create",
    ];
    const CONTROLLER = [
      "events.events.k8s.io [] create",
      "jobs.batch [] create delete get list watch",
      "leases.coordination.k8s.io [] create",
      "leases.coordination.k8s.io [unmix-controller] get update",
      "pods [] list watch",
      "secrets [] create delete get update",
      "separationjobs.unmix.dev [] delete get list watch",
      "separationjobs.unmix.dev/status [] patch",
    ];
    const rulesOf = async (ns: string, sa: string): Promise<string[]> => {
      const r = await k(["auth", "can-i", "--list", "-n", ns, `--as=system:serviceaccount:${ns}:${sa}`]);
      ok(r, `kubectl auth can-i --list as ${sa}`);
      const [header, ...lines] = r.stdout.split("\n").filter((l) => l.trim());
      const at = ["Non-Resource URLs", "Resource Names", "Verbs"].map((c) => header?.indexOf(c) ?? -1);
      assert.ok(
        at.every((i) => i > 0),
        `the table's header: ${header}`,
      );
      const [urls = 0, names = 0, verbs = 0] = at;
      return lines
        .map((l) => {
          const resource = l.slice(0, urls).trim() || l.slice(urls, names).trim();
          const verbList = l
            .slice(verbs)
            .trim()
            .replace(/^\[|\]$/g, "")
            .split(/\s+/)
            .sort()
            .join(" ");
          return `${resource} ${l.slice(names, verbs).trim()} ${verbList}`;
        })
        .sort();
    };
    for (const [ns, values, accounts] of [
      [
        "unmix-rbac",
        {},
        {
          "unmix-worker": WORKER,
          "unmix-controller": CONTROLLER,
          "unmix-ingress": [],
        },
      ],
      ["unmix-rbac-all", { worker: { enabled: false } }, { "unmix-ingress": WORKER, "unmix-controller": CONTROLLER }],
    ] as const) {
      ok(await k(["create", "namespace", ns]), `create namespace ${ns}`);
      const { objects } = await render({ ...REQUIRED, ...values }, [], "unmix", ns);
      const rbac = objects.filter((o) => ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].includes(o.kind));
      assert.ok(rbac.some((o) => o.kind === "Role"));
      ok(await k(["apply", "-f", "-"], { input: rbac.map((o) => stringify(o)).join("---\n") }), `apply the rendered RBAC (${ns})`);
      const everyone = new Set(await rulesOf(ns, "an-account-with-no-role"));
      assert.ok(everyone.size > 0, "the defaults every account has (discovery, self-reviews)");
      for (const [sa, expected] of Object.entries(accounts)) {
        const granted = (await rulesOf(ns, sa)).filter((line) => !everyone.has(line));
        assert.deepEqual(granted, [...expected].sort(), `${sa} in ${ns}`);
      }
      // the operator roles, bound in the release's namespace: a viewer may list, not purge; an operator may both. Asked
      // as the admin listener asks (a SubjectAccessReview: kubectl auth can-i does not ask about a resource no API serves)
      const access = new OperatorAccess(kc, { audiences: [], cacheSeconds: 0, cacheEntries: 1 });
      for (const [role, may] of [
        ["support-viewer", { list: true, get: true, purge: false, broadcast: false }],
        ["support-operator", { list: true, get: true, purge: true, broadcast: true }],
      ] as const) {
        ok(await k(["create", "rolebinding", role, "-n", ns, `--clusterrole=${ns}-unmix-${role}`, `--serviceaccount=${ns}:${role}`]), `bind ${role}`);
        const operator = { username: `system:serviceaccount:${ns}:${role}`, groups: ["system:serviceaccounts", `system:serviceaccounts:${ns}`] };
        for (const [verb, answer] of Object.entries(may)) {
          assert.equal(await access.allowed(operator, verb, { ...SUPPORT_RESOURCE, namespace: ns }), answer, `${role} ${verb} in ${ns}`);
          assert.equal(await access.allowed(operator, verb, { ...SUPPORT_RESOURCE, namespace: "elsewhere" }), false, `${role} ${verb} elsewhere`);
        }
      }
    }
  });

  test("helm install: the ingress, worker and controller pods run and pass their readiness probes; one controller leads", { skip: blocked }, async () => {
    ok(await k(["create", "namespace", NS]), "create namespace");
    const passwords = Object.entries(stack.nats?.users ?? {}).map(([name, u]) => `--from-literal=${name}=${u.password}`);
    ok(await k(["create", "secret", "generic", NATS_SECRET, "-n", NS, ...passwords]), "the NATS passwords");
    const r = await h([
      "install",
      "unmix",
      CHART,
      "--namespace",
      NS,
      "--create-namespace",
      "-f",
      valuesFile("local", localValues()),
      "--wait",
      "--timeout",
      "240s",
    ]);
    if (r.code !== 0) assert.fail(`helm install failed:\n${r.stdout}\n${r.stderr}\n${await podReport(NS)}`);
    for (const [name, replicas] of [
      ["unmix-ingress", 1],
      ["unmix-worker", 1],
      ["unmix-controller", 2],
    ] as const) {
      const d = await apps.readNamespacedDeployment({ name, namespace: NS });
      assert.equal(d.status?.readyReplicas, replicas, `${name} ready replicas\n${await podReport(NS)}`);
    }
    const pods = (await core.listNamespacedPod({ namespace: NS, labelSelector: RELEASE_PODS })).items;
    assert.equal(pods.length, 4);
    for (const p of pods) {
      // Ready is only set by the node agent's readiness probe against the pod IP
      assert.equal(p.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", `${p.metadata?.name} not ready\n${await podReport(NS)}`);
      assert.match(p.status?.podIP ?? "", /^127\.1\./);
    }
    // the probes really answered on the pod IP: ask them too
    for (const p of pods) {
      const port = p.spec?.containers[0]?.ports?.find((x) => x.name === "http")?.containerPort;
      const res = await fetch(`http://${p.status?.podIP}:${port}/readyz`);
      assert.equal(res.status, 200, `${p.metadata?.name} /readyz`);
    }
    const coord = kc.makeApiClient(k8s.CoordinationV1Api);
    const holder = await until(
      "a controller to hold the lease",
      async () => (await coord.readNamespacedLease({ name: "unmix-controller", namespace: NS }).catch(() => undefined))?.spec?.holderIdentity || undefined,
    );
    assert.ok(
      pods.some((p) => p.metadata?.name === holder),
      `lease holder ${holder} is a controller pod`,
    );
    const cm = await core.readNamespacedConfigMap({ name: "unmix-common", namespace: NS });
    assert.equal(cm.data?.KUBE_NAMESPACE, NS);
  });

  test("operators reach the admin listener as themselves: a viewer lists and is refused a purge, with the worker's own review rights", {
    skip: blocked,
  }, async () => {
    ok(await k(["create", "namespace", "sre"]), "create namespace sre");
    ok(await k(["create", "serviceaccount", "alice", "-n", "sre"]), "create alice");
    ok(await k(["create", "rolebinding", "alice", "-n", NS, `--clusterrole=${NS}-unmix-support-viewer`, "--serviceaccount=sre:alice"]), "bind alice");
    const token = (await k(["create", "token", "alice", "-n", "sre", "--audience", "unmix-admin"])).stdout.trim();
    const [worker] = (await core.listNamespacedPod({ namespace: NS, labelSelector: "app.kubernetes.io/component=worker" })).items;
    const url = `http://${worker?.status?.podIP}:${worker?.spec?.containers[0]?.ports?.find((x) => x.name === "admin")?.containerPort}`;
    const admin = (path: string, init: RequestInit = {}) =>
      fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } });
    assert.equal((await admin("/admin/jobs")).status, 200);
    const refused = await admin("/admin/purge", { method: "POST", body: JSON.stringify({ phone: "+49 176 00000000" }) });
    assert.equal(refused.status, 403);
    assert.match(((await refused.json()) as { message: string }).message, /system:serviceaccount:sre:alice may not purge unmix.dev\/support/);
    assert.equal((await fetch(`${url}/admin/jobs`)).status, 401);
  });

  test("helm test: each service answers /readyz through its Service, and the worker's account may create a SeparationJob (dry run)", {
    skip: blocked,
  }, async () => {
    // no --logs: Helm fetches them from the kubelet API, which the node agent does not serve
    const r = await h(["test", "unmix", "--namespace", NS, "--timeout", "120s"], 180_000);
    if (r.code !== 0) assert.fail(`helm test failed:\n${r.stdout}\n${r.stderr}\n${await podReport(NS)}`);
    assert.match(r.stdout, /Phase:\s+Succeeded/);
    // the pod is gone (hook-delete-policy hook-succeeded); its log stays in the node agent's folder
    const podDir = readdirSync(join(stack.dir, "pods")).find((d) => d.startsWith(`${NS}_unmix-test_`));
    assert.ok(podDir, "the test pod ran on the node agent");
    const log = readFileSync(join(stack.dir, "pods", podDir, "test.log"), "utf8");
    assert.match(log, /ingress: GET http:\/\/127\.2\.[\d.]+:8080\/readyz -> 200/);
    assert.match(log, /worker: GET http:\/\/127\.2\.[\d.]+:8080\/readyz -> 200/);
    assert.match(log, /controller: GET http:\/\/127\.2\.[\d.]+:8080\/readyz -> 200/);
    assert.match(log, /SeparationJob: server-side dry-run create -> accepted/);
    const sjs = await k(["get", "separationjobs", "-n", NS, "-o", "name"]);
    assert.equal(sjs.stdout.trim(), "", "the dry run stored nothing");
  });

  test("helm upgrade with changed values rolls the pods that read them", { skip: blocked }, async () => {
    const before = await podsByComponent(NS);
    const r = await h([
      "upgrade",
      "unmix",
      CHART,
      "--namespace",
      NS,
      "-f",
      valuesFile("local-upgrade", localValues({ logLevel: "debug", worker: { replicaCount: 2, concurrency: 4 } })),
      "--wait",
      "--timeout",
      "240s",
    ]);
    if (r.code !== 0) assert.fail(`helm upgrade failed:\n${r.stdout}\n${r.stderr}\n${await podReport(NS)}`);
    const worker = await apps.readNamespacedDeployment({ name: "unmix-worker", namespace: NS });
    assert.equal(worker.spec?.replicas, 2);
    assert.equal(worker.status?.readyReplicas, 2);
    // old pods drain away after --wait (rolling update, maxUnavailable 0)
    const after = await until("the old pods to be gone", async () => {
      const now = await podsByComponent(NS);
      const left = [...before.values()].flat().filter((n) => [...now.values()].flat().includes(n));
      return left.length === 0 ? now : undefined;
    });
    for (const c of ["ingress", "worker", "controller"]) assert.ok((after.get(c) ?? []).length > 0, `${c} pods after the upgrade`);
    assert.equal((await core.readNamespacedConfigMap({ name: "unmix-common", namespace: NS })).data?.LOG_LEVEL, "debug");
    const pods = (await core.listNamespacedPod({ namespace: NS, labelSelector: RELEASE_PODS })).items.filter((p) => !p.metadata?.deletionTimestamp);
    assert.equal(pods.length, 5);
    for (const p of pods) assert.equal(p.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", `${p.metadata?.name} ready after the upgrade`);
    const history = await h(["history", "unmix", "--namespace", NS, "-o", "json"]);
    assert.deepEqual(
      (JSON.parse(history.stdout) as { revision: number; status: string }[]).map((x) => [x.revision, x.status]),
      [
        [1, "superseded"],
        [2, "deployed"],
      ],
    );
  });

  test("helm uninstall removes the release but keeps the CRD (and the user-key Secret); a reinstall adopts them", { skip: blocked }, async () => {
    ok(await h(["uninstall", "unmix", "--namespace", NS, "--wait", "--timeout", "120s"]), "helm uninstall");
    await until("the release's pods to be gone", async () =>
      (await core.listNamespacedPod({ namespace: NS, labelSelector: RELEASE_PODS })).items.length === 0 ? true : undefined,
    );
    const left = await k(["get", "deploy,svc,cm,sa,role,rolebinding,pdb,networkpolicy", "-n", NS, "-l", "app.kubernetes.io/instance=unmix", "-o", "name"]);
    assert.equal(left.stdout.trim(), "", "nothing of the release left but what it keeps");
    ok(await k(["get", "crd", "separationjobs.unmix.dev"]), "the CRD is kept");
    const secrets = await k(["get", "secret", "-n", NS, "-o", "name"]);
    assert.deepEqual(secrets.stdout.trim().split("\n"), ["secret/unmix-keys", `secret/${NATS_SECRET}`], "the kept keys, and the test's own NATS passwords");
    const key = (await core.readNamespacedSecret({ name: "unmix-keys", namespace: NS })).data?.["user-key-secret"];
    // installing again over the kept CRD and Secret: Helm adopts them, and the user key is unchanged
    const r = await h([
      "install",
      "unmix",
      CHART,
      "--namespace",
      NS,
      "-f",
      valuesFile("local-again", localValues({ controller: { replicaCount: 1 } })),
      "--wait",
      "--timeout",
      "240s",
    ]);
    if (r.code !== 0) assert.fail(`helm install over the kept objects failed:\n${r.stdout}\n${r.stderr}\n${await podReport(NS)}`);
    assert.equal(
      (await core.readNamespacedSecret({ name: "unmix-keys", namespace: NS })).data?.["user-key-secret"],
      key,
      "the user key survived uninstall and reinstall",
    );
    ok(await h(["uninstall", "unmix", "--namespace", NS, "--wait", "--timeout", "120s"]), "helm uninstall (again)");
    await until("the release's pods to be gone", async () =>
      (await core.listNamespacedPod({ namespace: NS, labelSelector: RELEASE_PODS })).items.length === 0 ? true : undefined,
    );
  });

  async function podsByComponent(namespace: string): Promise<Map<string, string[]>> {
    const pods = (await core.listNamespacedPod({ namespace, labelSelector: RELEASE_PODS })).items.filter((p) => !p.metadata?.deletionTimestamp);
    const m = new Map<string, string[]>();
    for (const p of pods) {
      const c = p.metadata?.labels?.["app.kubernetes.io/component"] ?? "";
      m.set(c, [...(m.get(c) ?? []), p.metadata?.name ?? ""]);
    }
    return m;
  }

  /** For failure messages: each pod's state and the tail of its containers' logs. */
  async function podReport(namespace: string): Promise<string> {
    const pods = (await core.listNamespacedPod({ namespace }).catch(() => ({ items: [] as k8s.V1Pod[] }))).items;
    const lines: string[] = [];
    for (const p of pods) {
      lines.push(
        `pod ${p.metadata?.name}: ${p.status?.phase} ${JSON.stringify(p.status?.containerStatuses?.map((c) => ({ ready: c.ready, restarts: c.restartCount, state: c.state })))}`,
      );
      const dir = join(stack.dir, "pods", `${namespace}_${p.metadata?.name}_${p.metadata?.uid}`);
      for (const c of p.spec?.containers ?? []) {
        for (const f of [`${c.name}.log`, `${c.name}-1.log`]) {
          const file = join(dir, f);
          if (existsSync(file)) lines.push(`--- ${f}\n${readFileSync(file, "utf8").split("\n").slice(-25).join("\n")}`);
        }
      }
    }
    return lines.join("\n");
  }
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}
