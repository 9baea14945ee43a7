// A real Kubernetes control plane from the pinned Go builds: etcd, kube-apiserver,
// kube-controller-manager (Job, garbage collector, TTL, namespace, service account, Deployment and
// ReplicaSet controllers) and kube-scheduler.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Agent } from "node:https";
import { join } from "node:path";
import { freePort } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitUntil } from "./processes.ts";
import { bin } from "./versions.ts";

export interface ControlPlane {
  server: string;
  token: string;
  caFile: string;
  caData: string;
  kubeconfigPath: string;
  /** The /metrics of kube-controller-manager and kube-scheduler (self-signed HTTPS, no token needed). */
  metricsUrls: { controllerManager: string; scheduler: string };
  /** Stops and starts kube-apiserver alone (etcd keeps the data), as an API server crash would. */
  restartApiServer(): Promise<void>;
  /** The same with SIGKILL: no graceful shutdown, open watches and requests cut mid-way. */
  crashApiServer(): Promise<void>;
  stop(): Promise<void>;
}

const CONTROLLERS = [
  "job",
  // fills the built-in view/edit/admin roles from the ClusterRoles labelled aggregate-to-*
  "clusterrole-aggregation",
  "garbagecollector",
  "ttl-after-finished",
  "namespace",
  "serviceaccount",
  "serviceaccount-token",
  "deployment",
  "replicaset",
  "disruption",
  "endpointslice",
  "podgc",
];

async function httpsOk(url: string, ca: string, token?: string): Promise<boolean> {
  const { request } = await import("node:https");
  return new Promise((resolve) => {
    const req = request(url, { ca, agent: new Agent({ ca }), headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.setTimeout(2000, () => req.destroy());
    req.end();
  });
}

export async function startControlPlane(dir: string): Promise<ControlPlane> {
  const pki = join(dir, "pki");
  mkdirSync(pki, { recursive: true });
  const procs: ManagedProcess[] = [];

  // etcd
  const etcdClient = await freePort();
  const etcdPeer = await freePort();
  const etcd = spawnManaged({
    name: "etcd",
    command: bin("etcd"),
    args: [
      "--data-dir",
      join(dir, "etcd"),
      "--listen-client-urls",
      `http://127.0.0.1:${etcdClient}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${etcdClient}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${etcdPeer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${etcdPeer}`,
      "--initial-cluster",
      `default=http://127.0.0.1:${etcdPeer}`,
      "--unsafe-no-fsync",
      "--log-level",
      "warn",
    ],
    dir,
  });
  procs.push(etcd);
  await waitUntil("etcd", async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok, { process: etcd });

  // kube-apiserver: self-signed serving cert, a static admin token, RBAC, a service-account signer
  const token = randomBytes(24).toString("hex");
  writeFileSync(join(pki, "tokens.csv"), `${token},admin,admin,"system:masters"\n`);
  const sa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(pki, "sa.key"), sa.privateKey.export({ type: "pkcs1", format: "pem" }));
  writeFileSync(join(pki, "sa.pub"), sa.publicKey.export({ type: "spki", format: "pem" }));
  const apiPort = await freePort();
  const server = `https://127.0.0.1:${apiPort}`;
  let apiserver: ManagedProcess | undefined;
  const startApiServer = async () => {
    apiserver = spawnManaged({
      name: "kube-apiserver",
      command: bin("kube-apiserver"),
      args: [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${apiPort}`,
        `--cert-dir=${pki}`,
        `--token-auth-file=${join(pki, "tokens.csv")}`,
        "--authorization-mode=RBAC",
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${join(pki, "sa.pub")}`,
        `--service-account-signing-key-file=${join(pki, "sa.key")}`,
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=1",
      ],
      dir,
    });
    const p = apiserver;
    await waitUntil("kube-apiserver certificate", async () => readFileSync(join(pki, "apiserver.crt")).length > 0, { process: p, timeoutMs: 60_000 });
    const ca = readFileSync(join(pki, "apiserver.crt"), "utf8");
    await waitUntil("kube-apiserver", () => httpsOk(`${server}/readyz`, ca, token), { process: p, timeoutMs: 120_000 });
  };
  await startApiServer();
  const caFile = join(pki, "apiserver.crt");
  const caData = readFileSync(caFile, "utf8");

  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(
    kubeconfigPath,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "unmix-local", cluster: { server, "certificate-authority-data": Buffer.from(caData).toString("base64") } }],
      users: [{ name: "admin", user: { token } }],
      contexts: [{ name: "unmix-local", context: { cluster: "unmix-local", user: "admin", namespace: "default" } }],
      "current-context": "unmix-local",
    }),
  );

  const kcmPort = await freePort();
  const kcm = spawnManaged({
    name: "kube-controller-manager",
    command: bin("kube-controller-manager"),
    args: [
      `--kubeconfig=${kubeconfigPath}`,
      "--leader-elect=false",
      `--controllers=${CONTROLLERS.join(",")}`,
      `--service-account-private-key-file=${join(pki, "sa.key")}`,
      `--root-ca-file=${caFile}`,
      "--use-service-account-credentials=false",
      "--bind-address=127.0.0.1",
      `--secure-port=${kcmPort}`,
      "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
      "--authentication-skip-lookup=true",
      "--concurrent-job-syncs=20",
      "--concurrent-gc-syncs=20",
      "--v=1",
    ],
    dir,
  });
  procs.push(kcm);
  const schedPort = await freePort();
  const scheduler = spawnManaged({
    name: "kube-scheduler",
    command: bin("kube-scheduler"),
    args: [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      `--secure-port=${schedPort}`,
      "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
      "--v=1",
    ],
    dir,
  });
  procs.push(scheduler);
  const insecure = async (url: string) => {
    const { request } = await import("node:https");
    return new Promise<boolean>((resolve) => {
      const req = request(url, { rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on("error", () => resolve(false));
      req.end();
    });
  };
  await Promise.all([
    waitUntil("kube-controller-manager", () => insecure(`https://127.0.0.1:${kcmPort}/healthz`), { process: kcm, timeoutMs: 120_000 }),
    waitUntil("kube-scheduler", () => insecure(`https://127.0.0.1:${schedPort}/healthz`), { process: scheduler, timeoutMs: 120_000 }),
  ]);

  return {
    server,
    token,
    caFile,
    caData,
    kubeconfigPath,
    metricsUrls: { controllerManager: `https://127.0.0.1:${kcmPort}/metrics`, scheduler: `https://127.0.0.1:${schedPort}/metrics` },
    async restartApiServer() {
      await apiserver?.stop();
      await startApiServer();
    },
    async crashApiServer() {
      apiserver?.kill("SIGKILL");
      await apiserver?.exited;
      await startApiServer();
    },
    async stop() {
      await Promise.all([kcm.stop(), scheduler.stop()]);
      await apiserver?.stop();
      await etcd.stop();
    },
  };
}
