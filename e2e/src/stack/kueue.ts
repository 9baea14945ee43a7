// Kueue on the local stack (opt-in: startStack({ kueue: true })): its controller-manager built from
// its Go module (install.sh kueue, pinned as KUEUE_VERSION), its CRDs from the same module's source
// (config/components/crd/bases), and its admission webhooks. Kueue's internal certificate management
// is off: it makes a certificate for the in-cluster Service name, which the API server here cannot
// resolve (no DNS). Instead openssl makes a self-signed certificate for 127.0.0.1, Kueue serves its
// webhooks with it, and the harness writes the webhook configurations (from the module's
// config/components/webhook/manifests.yaml) with a URL on 127.0.0.1 and that certificate as caBundle.
// Kueue manages batch/v1 Jobs that carry kueue.x-k8s.io/queue-name, and no others.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { freePort } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitUntil } from "./processes.ts";
import { bin, REPO_ROOT, versions } from "./versions.ts";

export const KUEUE_GROUP = "kueue.x-k8s.io";
export const KUEUE_API_VERSION = "v1beta2";

export interface KueueServer {
  proc: ManagedProcess;
  stop(): Promise<void>;
}

/** Builds the controller-manager if the cache lacks this version (once: ~minutes), then finds the module's source. */
function installKueue(): { binary: string; sourceDir: string } {
  execFileSync("bash", [join(REPO_ROOT, "e2e/stack/install.sh"), "kueue"], { stdio: "inherit" });
  const mod = `sigs.k8s.io/kueue@v${versions.KUEUE_VERSION}`;
  // already in the module cache after the install; `go mod download` says where (and fetches it if the cache was cleaned)
  const info = JSON.parse(execFileSync("go", ["mod", "download", "-json", mod], { encoding: "utf8" })) as { Dir: string };
  return { binary: bin("kueue"), sourceDir: info.Dir };
}

/**
 * Kueue's CRDs (ClusterQueue, LocalQueue, Workload, ResourceFlavor, WorkloadPriorityClass, …), created
 * and established. With kubectl, as Kueue's docs do: client-node's typed models would drop the
 * `x-kubernetes-*` schema extensions these CRDs rely on, and a client-side apply's annotation would
 * not fit.
 */
function applyKueueCrds(kubeconfigPath: string, sourceDir: string): void {
  const dir = join(sourceDir, "config/components/crd/bases");
  const kubectl = (...args: string[]) => execFileSync(bin("kubectl"), ["--kubeconfig", kubeconfigPath, ...args], { stdio: ["ignore", "ignore", "inherit"] });
  kubectl("apply", "--server-side", "-f", dir);
  kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", dir);
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
type WebhookConfiguration = { apiVersion: string; kind: string; metadata: { name: string }; webhooks: Webhook[] };

/**
 * The module's webhook configurations for what this stack runs (batch/v1 Jobs and Kueue's own
 * objects), pointed at 127.0.0.1. The others (pods, Deployments, JobSets, Ray, …) are left out:
 * their integrations are off, so Kueue does not serve their paths, and the pod webhook
 * (failurePolicy Fail) would refuse every pod.
 */
function webhookConfigurations(sourceDir: string, port: number, caPem: string): WebhookConfiguration[] {
  const file = join(sourceDir, "config/components/webhook/manifests.yaml");
  const docs = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS() as WebhookConfiguration);
  const caBundle = Buffer.from(caPem).toString("base64");
  return docs.map((d) => ({
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: d.kind,
    metadata: { name: `kueue-${d.metadata.name}` },
    webhooks: d.webhooks
      .filter((w) => w.rules?.every((r) => r.apiGroups?.every((g) => g === "batch" || g === KUEUE_GROUP)))
      .map((w) => ({ ...w, clientConfig: { url: `https://127.0.0.1:${port}${w.clientConfig.service?.path ?? ""}`, caBundle } })),
  }));
}

export async function startKueue(dir: string, kubeconfigPath: string, kc: k8s.KubeConfig): Promise<KueueServer> {
  const { binary, sourceDir } = installKueue();
  applyKueueCrds(kubeconfigPath, sourceDir);
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
  // Without internal certificate management, Kueue 0.17 reads its metrics server's certificate from
  // the fixed path /etc/kueue/metrics/certs (cmd/kueue/main.go) and exits if it is missing, even with
  // metrics off. Rather than write to the machine's /etc, Kueue runs in its own mount namespace where
  // /etc is the real one with that folder laid over it (read-only overlay), holding the same
  // self-signed certificate (never served: metrics are off).
  const etc = join(home, "etc");
  mkdirSync(join(etc, "kueue/metrics"), { recursive: true });
  cpSync(join(home, "certs"), join(etc, "kueue/metrics/certs"), { recursive: true });
  // the visibility API server would need an APIService and the API server's front-proxy CA
  const args = [`--config=${join(home, "config.yaml")}`, "--feature-gates=VisibilityOnDemand=false", "--zap-log-level=2"];
  const proc = spawnManaged({
    name: "kueue",
    command: "unshare",
    args: ["--mount", "--propagation", "private", "sh", "-c", `mount -t overlay overlay -o lowerdir=${etc}:/etc /etc && exec "$0" "$@"`, binary, ...args],
    dir,
    env: { KUBECONFIG: kubeconfigPath },
  });
  try {
    await waitUntil("kueue ready", async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok, { process: proc, timeoutMs: 120_000 });
    // kubectl for the same reason as the CRDs: the manifests as they are, not through typed models
    execFileSync(bin("kubectl"), ["--kubeconfig", kubeconfigPath, "create", "-f", "-"], {
      input: webhookConfigurations(sourceDir, webhookPort, caPem)
        .map((c) => JSON.stringify(c))
        .join("\n"),
      stdio: ["pipe", "ignore", "inherit"],
    });
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
  return { proc, stop: () => proc.stop() };
}
