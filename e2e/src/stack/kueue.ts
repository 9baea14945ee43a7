// Kueue on the local stack (opt-in: startStack({ kueue: true })): its controller-manager built from
// its Go module (install.sh kueue, pinned as KUEUE_VERSION), its CRDs from the same module's source
// (config/components/crd/bases), and its admission webhooks. Kueue's internal certificate management
// is off: it makes a certificate for the in-cluster Service name, which the API server here cannot
// resolve (no DNS). Instead openssl makes a self-signed certificate for 127.0.0.1, Kueue serves its
// webhooks with it, and the harness writes the webhook configurations (from the module's
// config/components/webhook/manifests.yaml) with a URL on 127.0.0.1 and that certificate as caBundle.
// Kueue manages batch/v1 Jobs that carry kueue.x-k8s.io/queue-name, and no others.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { freePort } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitUntil } from "./processes.ts";
import { BIN_DIR, bin, REPO_ROOT, versions } from "./versions.ts";

export const KUEUE_GROUP = "kueue.x-k8s.io";
export const KUEUE_API_VERSION = "v1beta2";

export interface KueueServer {
  proc: ManagedProcess;
  /** The module's source in the Go module cache (CRDs, webhook manifests). */
  sourceDir: string;
  stop(): Promise<void>;
}

/** Whether the controller-manager of the pinned version is built (install.sh's version stamp). */
export function kueueBuilt(): boolean {
  const stamp = join(BIN_DIR, ".kueue.version");
  return existsSync(bin("kueue")) && existsSync(stamp) && readFileSync(stamp, "utf8").trim() === versions.KUEUE_VERSION;
}

/** Builds the controller-manager if the cache lacks this version (once: ~minutes), then finds the module's source. */
export function installKueue(): { binary: string; sourceDir: string } {
  execFileSync("bash", [join(REPO_ROOT, "e2e/stack/install.sh"), "kueue"], { stdio: "inherit" });
  const mod = `sigs.k8s.io/kueue@v${versions.KUEUE_VERSION}`;
  // already in the module cache after the install; `go mod download` says where (and fetches it if the cache was cleaned)
  const info = JSON.parse(execFileSync("go", ["mod", "download", "-json", mod], { encoding: "utf8", env: { ...process.env, GOFLAGS: "-mod=mod" } })) as {
    Dir: string;
  };
  return { binary: bin("kueue"), sourceDir: info.Dir };
}

/** Kueue's CRDs (ClusterQueue, LocalQueue, Workload, ResourceFlavor, WorkloadPriorityClass, …), applied and established. */
export async function applyKueueCrds(kc: k8s.KubeConfig, sourceDir: string): Promise<void> {
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const dir = join(sourceDir, "config/components/crd/bases");
  const crds = readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), "utf8")).map((d) => d.toJS() as k8s.V1CustomResourceDefinition))
    .filter((c) => c?.kind === "CustomResourceDefinition");
  for (const body of crds) {
    try {
      await ext.createCustomResourceDefinition({ body });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
    }
  }
  await waitUntil(
    "Kueue's CRDs established",
    async () => {
      for (const c of crds) {
        const got = await ext.readCustomResourceDefinition({ name: c.metadata?.name as string });
        if (!got.status?.conditions?.some((x) => x.type === "Established" && x.status === "True")) return false;
      }
      return true;
    },
    { timeoutMs: 60_000 },
  );
}

/** A self-signed serving certificate for 127.0.0.1, named as controller-runtime's webhook server expects. */
function selfSignedCert(certDir: string): string {
  mkdirSync(certDir, { recursive: true });
  // biome-ignore format: one openssl invocation
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kueue-webhook.local",
    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(certDir, "tls.key"), "-out", join(certDir, "tls.crt")], { stdio: "ignore" });
  return readFileSync(join(certDir, "tls.crt"), "utf8");
}

type Webhook = { name: string; clientConfig: { service?: { path?: string }; url?: string; caBundle?: string }; rules?: { apiGroups?: string[] }[] };

/**
 * The module's webhook configurations for what this stack runs (batch/v1 Jobs and Kueue's own
 * objects), pointed at 127.0.0.1. The others (pods, Deployments, JobSets, Ray, …) are left out:
 * their integrations are off, so Kueue does not serve their paths, and the pod webhook
 * (failurePolicy Fail) would refuse every pod.
 */
export function webhookConfigurations(
  sourceDir: string,
  port: number,
  caPem: string,
): (k8s.V1MutatingWebhookConfiguration | k8s.V1ValidatingWebhookConfiguration)[] {
  const docs = parseAllDocuments(readFileSync(join(sourceDir, "config/components/webhook/manifests.yaml"), "utf8")).map(
    (d) => d.toJS() as { kind: string; metadata: { name: string }; webhooks: Webhook[] },
  );
  const caBundle = Buffer.from(caPem).toString("base64");
  return docs.map((d) => ({
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: d.kind,
    metadata: { name: `kueue-${d.metadata.name}` },
    webhooks: d.webhooks
      .filter((w) => w.rules?.every((r) => r.apiGroups?.every((g) => g === "batch" || g === KUEUE_GROUP)))
      .map((w) => ({ ...w, clientConfig: { url: `https://127.0.0.1:${port}${w.clientConfig.service?.path ?? ""}`, caBundle } })),
  })) as (k8s.V1MutatingWebhookConfiguration | k8s.V1ValidatingWebhookConfiguration)[];
}

export async function startKueue(dir: string, kubeconfigPath: string, kc: k8s.KubeConfig): Promise<KueueServer> {
  const { binary, sourceDir } = installKueue();
  await applyKueueCrds(kc, sourceDir);
  const home = join(dir, "kueue");
  const caPem = selfSignedCert(join(home, "certs"));
  const [webhookPort, healthPort] = await Promise.all([freePort(), freePort()]);
  const config = {
    apiVersion: `config.${KUEUE_GROUP}/v1beta2`,
    kind: "Configuration",
    namespace: "kueue-system",
    health: { healthProbeBindAddress: `127.0.0.1:${healthPort}` },
    metrics: { bindAddress: "0" },
    webhook: { host: "127.0.0.1", port: webhookPort, certDir: join(home, "certs") },
    leaderElection: { leaderElect: false },
    internalCertManagement: { enable: false },
    manageJobsWithoutQueueName: false,
    integrations: { frameworks: ["batch/job"] },
  };
  writeFileSync(join(home, "config.yaml"), JSON.stringify(config));
  const proc = spawnManaged({
    name: "kueue",
    command: binary,
    // the visibility API server would need an APIService and the API server's front-proxy CA
    args: [`--config=${join(home, "config.yaml")}`, "--feature-gates=VisibilityOnDemand=false", "--zap-log-level=2"],
    dir,
    env: { KUBECONFIG: kubeconfigPath },
  });
  try {
    await waitUntil("kueue ready", async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok, { process: proc, timeoutMs: 120_000 });
    const admission = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
    for (const c of webhookConfigurations(sourceDir, webhookPort, caPem)) {
      if (c.kind === "MutatingWebhookConfiguration") await admission.createMutatingWebhookConfiguration({ body: c as k8s.V1MutatingWebhookConfiguration });
      else await admission.createValidatingWebhookConfiguration({ body: c as k8s.V1ValidatingWebhookConfiguration });
    }
    // the API server picks new webhook configurations up a moment later: until then a labelled Job
    // would run at once instead of waiting for Kueue
    const batch = kc.makeApiClient(k8s.BatchV1Api);
    await waitUntil(
      "Kueue's Job webhook in force",
      async () => {
        const probe: k8s.V1Job = {
          metadata: { name: "kueue-webhook-probe", labels: { [`${KUEUE_GROUP}/queue-name`]: "probe" } },
          spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "probe", image: "probe" }] } } },
        };
        const got = await batch.createNamespacedJob({ namespace: "default", body: probe, dryRun: "All" });
        return got.spec?.suspend === true;
      },
      { process: proc, timeoutMs: 60_000 },
    );
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { proc, sourceDir, stop: () => proc.stop() };
}
