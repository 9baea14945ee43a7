// A local node agent: the part of a kubelet this stack needs. It registers a Node advertising GPUs,
// runs the containers of pods the real scheduler binds to it as local processes (image name mapped
// to a local command), and writes phase, container states, exit codes and termination messages back
// through the API exactly where a kubelet would, so the real Job controller, podFailurePolicy and
// garbage collector act on them.
//
// Deliberate differences from a kubelet (documented in e2e/README.md): no container isolation; volume
// mount paths are local folders and env values/args that start with a mount path are rewritten to
// them; a projected service-account token volume also gets a kubeconfig (KUBECONFIG) since the
// in-cluster paths cannot exist; each pod gets its own loopback address (127.1.x.y) as its pod IP;
// with no kube-proxy, each Service gets a loopback address (127.2.x.y) where the agent forwards
// connections to a ready endpoint, and pods see it in the kubelet's service variables.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { type ManagedProcess, spawnManaged } from "./processes.ts";

export interface ImageMapping {
  /** Local command standing in for the image's entrypoint. */
  entrypoint: string[];
  /** Commands a pod spec may name (command[0]) mapped to local commands. */
  commands?: Record<string, string[]>;
  env?: Record<string, string>;
  cwd?: string;
}

export interface NodeAgentOptions {
  kubeconfigPath: string;
  dir: string;
  nodeName?: string;
  gpus?: number;
  gpuResource?: string;
  labels?: Record<string, string>;
  taints?: k8s.V1Taint[];
  images: Record<string, ImageMapping>;
}

interface RunningContainer {
  name: string;
  proc?: ManagedProcess;
  state: k8s.V1ContainerState;
  lastState?: k8s.V1ContainerState;
  restartCount: number;
  ready: boolean;
  terminationFile: string;
  logFile: string;
  probeFailures: number;
}

interface PodRun {
  uid: string;
  namespace: string;
  name: string;
  dir: string;
  ip: string;
  containers: RunningContainer[];
  startedAt: string;
  terminating: boolean;
  done: boolean;
  timers: NodeJS.Timeout[];
  writes: Promise<void>;
}

const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
const isNotFound = (err: unknown) => (err as { code?: number }).code === 404;
const now = () => new Date();

export class NodeAgent {
  readonly nodeName: string;
  private readonly kc = new k8s.KubeConfig();
  private readonly core: k8s.CoreV1Api;
  private readonly coord: k8s.CoordinationV1Api;
  private readonly pods = new Map<string, PodRun>();
  private informer?: k8s.ListWatch<k8s.V1Pod>;
  private stopped = false;
  private heartbeat?: NodeJS.Timeout;
  private resync?: NodeJS.Timeout;
  private nextIp = 1;
  private nextServiceIp = 1;
  /** Service (namespace/name) → its local address and one forwarding listener per port. */
  private readonly services = new Map<string, Promise<{ ip: string; listeners: Map<number, Server> }>>();
  private readonly forwarded = new Set<Socket>();
  private gpus: number;
  private readonly o: NodeAgentOptions;

  constructor(o: NodeAgentOptions) {
    this.o = o;
    this.nodeName = o.nodeName ?? "unmix-gpu-node";
    this.gpus = o.gpus ?? 1;
    this.kc.loadFromFile(o.kubeconfigPath);
    this.core = this.kc.makeApiClient(k8s.CoreV1Api);
    this.coord = this.kc.makeApiClient(k8s.CoordinationV1Api);
  }

  async start(): Promise<void> {
    await this.registerNode();
    await this.renewLease();
    this.heartbeat = setInterval(() => void this.renewLease().catch(() => {}), 10_000);
    await this.watchPods();
    // level-triggered safety net: a missed watch event is repaired within seconds
    this.resync = setInterval(() => void this.relist().catch(() => {}), 5_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearInterval(this.resync);
    await this.informer?.stop();
    await Promise.all([...this.pods.values()].map((r) => this.killPod(r, 0)));
    for (const entry of this.services.values()) {
      const { listeners } = await entry.catch(() => ({ listeners: new Map<number, Server>() }));
      for (const l of listeners.values()) l.close();
    }
    for (const socket of this.forwarded) socket.destroy();
  }

  /** Changes the advertised GPU count (for tests of capacity). */
  async setGpus(n: number): Promise<void> {
    this.gpus = n;
    await this.registerNode();
  }

  private capacity(): Record<string, string> {
    return { cpu: "16", memory: "64Gi", pods: "1100", "ephemeral-storage": "100Gi", [this.o.gpuResource ?? "nvidia.com/gpu"]: String(this.gpus) };
  }

  private async registerNode(): Promise<void> {
    const body: k8s.V1Node = {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: this.nodeName,
        labels: { "kubernetes.io/hostname": this.nodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", ...this.o.labels },
      },
      spec: { taints: this.o.taints ?? [] },
    };
    try {
      await this.core.createNode({ body });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
    }
    // Admission (TaintNodesByCondition) gives a new Node the not-ready taint, which the node
    // lifecycle controller would lift once Ready; that controller has no place here, so set ours.
    await this.core.patchNode({ name: this.nodeName, body: { metadata: body.metadata, spec: body.spec } }, MERGE);
    await this.writeNodeStatus();
  }

  private async writeNodeStatus(): Promise<void> {
    const t = now().toISOString();
    await this.core.patchNodeStatus(
      {
        name: this.nodeName,
        body: {
          status: {
            capacity: this.capacity(),
            allocatable: this.capacity(),
            addresses: [
              { type: "InternalIP", address: "127.0.0.1" },
              { type: "Hostname", address: this.nodeName },
            ],
            conditions: [
              {
                type: "Ready",
                status: "True",
                reason: "KubeletReady",
                message: "unmix local node agent is ready",
                lastHeartbeatTime: t,
                lastTransitionTime: t,
              },
            ],
            nodeInfo: {
              architecture: "amd64",
              operatingSystem: "linux",
              kubeletVersion: "unmix-local-agent",
              kubeProxyVersion: "",
              containerRuntimeVersion: "local-process://1",
              bootID: "",
              kernelVersion: "",
              machineID: "",
              osImage: "local",
              systemUUID: "",
            },
          },
        },
      },
      MERGE,
    );
  }

  private async renewLease(): Promise<void> {
    // Lease times are MicroTime: the API server insists on six fractional digits
    const renewTime = now()
      .toISOString()
      .replace(/\.(\d{3})Z$/, ".$1000Z") as unknown as Date;
    const lease = {
      metadata: { name: this.nodeName, namespace: "kube-node-lease" },
      spec: { holderIdentity: this.nodeName, leaseDurationSeconds: 40, renewTime },
    };
    try {
      await this.coord.replaceNamespacedLease({ name: this.nodeName, namespace: "kube-node-lease", body: lease });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.coord.createNamespacedLease({ namespace: "kube-node-lease", body: lease }).catch(() => {});
    }
  }

  private async watchPods(): Promise<void> {
    const fieldSelector = `spec.nodeName=${this.nodeName}`;
    const list = () => this.core.listPodForAllNamespaces({ fieldSelector });
    const informer = new k8s.ListWatch<k8s.V1Pod>("/api/v1/pods", new k8s.Watch(this.kc), list, false, undefined, fieldSelector);
    informer.on("add", (p) => void this.sync(p));
    informer.on("update", (p) => void this.sync(p));
    informer.on("delete", (p) => void this.forget(p));
    informer.on("error", () => {
      // the informer stops on errors other than timeouts: start it again after a pause
      if (!this.stopped) setTimeout(() => void informer.start().catch(() => {}), 1000);
    });
    this.informer = informer;
    await informer.start();
  }

  private async relist(): Promise<void> {
    const { items } = await this.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.nodeName}` });
    const seen = new Set(items.map((p) => p.metadata?.uid));
    for (const p of items) await this.sync(p);
    for (const run of this.pods.values()) if (!seen.has(run.uid)) await this.killPod(run, 0);
  }

  private async sync(pod: k8s.V1Pod): Promise<void> {
    if (this.stopped) return;
    const uid = pod.metadata?.uid ?? "";
    const run = this.pods.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      const grace = pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      if (run) await this.killPod(run, grace);
      // the kubelet's last word on a deleted pod: remove it for good (grace 0 in the body; the
      // client sends no query parameters alongside a body)
      await this.core
        .deleteNamespacedPod({
          name: pod.metadata.name ?? "",
          namespace: pod.metadata.namespace ?? "",
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid } },
        })
        .catch(() => {});
      return;
    }
    if (run) return;
    const phase = pod.status?.phase;
    if (phase === "Succeeded" || phase === "Failed") return;
    await this.startPod(pod);
  }

  private async forget(pod: k8s.V1Pod): Promise<void> {
    const run = this.pods.get(pod.metadata?.uid ?? "");
    if (run) await this.killPod(run, 0);
  }

  private allocateIp(): string {
    const n = this.nextIp++;
    return `127.1.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
  }

  private async startPod(pod: k8s.V1Pod): Promise<void> {
    const meta = pod.metadata as k8s.V1ObjectMeta;
    const uid = meta.uid as string;
    const dir = join(this.o.dir, "pods", `${meta.namespace}_${meta.name}_${uid}`);
    mkdirSync(dir, { recursive: true });
    const run: PodRun = {
      uid,
      namespace: meta.namespace ?? "default",
      name: meta.name ?? "",
      dir,
      ip: this.allocateIp(),
      containers: (pod.spec?.containers ?? []).map((c) => ({
        name: c.name,
        state: { waiting: { reason: "ContainerCreating" } },
        restartCount: 0,
        ready: false,
        terminationFile: join(dir, `${c.name}.termination-log`),
        logFile: join(dir, `${c.name}.log`),
        probeFailures: 0,
      })),
      startedAt: now().toISOString(),
      terminating: false,
      done: false,
      timers: [],
      writes: Promise.resolve(),
    };
    this.pods.set(uid, run);
    let mounts: Map<string, string>;
    try {
      mounts = await this.prepareVolumes(pod, run);
    } catch (err) {
      for (const c of run.containers) c.state = { waiting: { reason: "CreateContainerConfigError", message: (err as Error).message } };
      await this.writeStatus(pod, run);
      this.pods.delete(uid); // retried on the next resync
      return;
    }
    for (const [i, spec] of (pod.spec?.containers ?? []).entries()) {
      await this.startContainer(pod, run, spec, run.containers[i] as RunningContainer, mounts);
    }
    await this.writeStatus(pod, run);
  }

  private async startContainer(pod: k8s.V1Pod, run: PodRun, spec: k8s.V1Container, c: RunningContainer, mounts: Map<string, string>): Promise<void> {
    const image = spec.image ?? "";
    const mapping = this.o.images[image] ?? this.o.images[image.replace(/@sha256:.*$/, "").replace(/:[^/:]+$/, "")];
    if (!mapping) {
      c.state = { waiting: { reason: "ErrImagePull", message: `image "${image}" is not mapped to a local command on this node` } };
      return;
    }
    let env: Record<string, string>;
    try {
      env = await this.resolveEnv(pod, run, spec, mounts);
    } catch (err) {
      c.state = { waiting: { reason: "CreateContainerConfigError", message: (err as Error).message } };
      return;
    }
    const rewrite = (v: string) => rewritePath(v, mounts);
    const command = spec.command?.length
      ? (mapping.commands?.[spec.command[0] as string] ?? [spec.command[0] as string]).concat(spec.command.slice(1).map(rewrite))
      : mapping.entrypoint;
    const args = (spec.args ?? []).map((a) => rewrite(expand(a, env)));
    const [cmd, ...rest] = [...command, ...args];
    rmSync(c.terminationFile, { force: true });
    const proc = spawnManaged({
      name: `${spec.name}${c.restartCount ? `-${c.restartCount}` : ""}`,
      command: cmd as string,
      args: rest,
      dir: run.dir,
      cwd: mapping.cwd ?? run.dir,
      env: {
        PATH: process.env.PATH,
        HOME: run.dir,
        LANG: "C.UTF-8",
        ...mapping.env,
        ...env,
        // where this node reads the termination message from (the container's terminationMessagePath)
        TERMINATION_LOG: c.terminationFile,
        HOSTNAME: run.name,
      },
    });
    c.proc = proc;
    c.ready = !spec.readinessProbe;
    c.state = { running: { startedAt: now() } };
    void proc.exited.then((code) => this.onExit(pod, run, spec, c, code, mounts));
    for (const probe of [spec.readinessProbe, spec.livenessProbe]) {
      if (!probe) continue;
      const liveness = probe === spec.livenessProbe;
      const period = (probe.periodSeconds ?? 10) * 1000;
      const first = (probe.initialDelaySeconds ?? 0) * 1000;
      const tick = async () => {
        if (c.proc !== proc || !proc.alive() || run.done) return;
        const ok = await this.probe(probe, run, spec);
        if (liveness) {
          c.probeFailures = ok ? 0 : c.probeFailures + 1;
          if (c.probeFailures >= (probe.failureThreshold ?? 3)) proc.kill("SIGKILL");
        } else if (ok !== c.ready) {
          c.ready = ok;
          await this.writeStatus(pod, run);
        }
        run.timers.push(setTimeout(() => void tick(), Math.min(period, ok || liveness ? period : 1000)));
      };
      run.timers.push(setTimeout(() => void tick(), first));
    }
  }

  private async probe(probe: k8s.V1Probe, run: PodRun, spec: k8s.V1Container): Promise<boolean> {
    const portOf = (p: number | string | undefined) => (typeof p === "number" ? p : (spec.ports?.find((x) => x.name === p)?.containerPort ?? Number(p)));
    const timeout = (probe.timeoutSeconds ?? 1) * 1000;
    if (probe.httpGet) {
      const host = probe.httpGet.host ?? run.ip;
      const url = `${(probe.httpGet.scheme ?? "HTTP").toLowerCase()}://${host}:${portOf(probe.httpGet.port)}${probe.httpGet.path ?? "/"}`;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(timeout) });
        return res.status >= 200 && res.status < 400;
      } catch {
        return false;
      }
    }
    if (probe.tcpSocket) {
      return new Promise((resolve) => {
        const s = connect({ host: probe.tcpSocket?.host ?? run.ip, port: portOf(probe.tcpSocket?.port) }, () => {
          s.destroy();
          resolve(true);
        });
        s.on("error", () => resolve(false));
        s.setTimeout(timeout, () => {
          s.destroy();
          resolve(false);
        });
      });
    }
    return false; // exec and grpc probes are not supported by this agent
  }

  private async onExit(
    pod: k8s.V1Pod,
    run: PodRun,
    spec: k8s.V1Container,
    c: RunningContainer,
    code: number | string,
    mounts: Map<string, string>,
  ): Promise<void> {
    const exitCode = typeof code === "number" ? code : code === "SIGKILL" ? 137 : 143;
    let message = existsSync(c.terminationFile) ? readFileSync(c.terminationFile, "utf8").slice(0, 4096) : "";
    if (!message && exitCode !== 0 && spec.terminationMessagePolicy === "FallbackToLogsOnError") {
      message = readFileSync(join(run.dir, `${c.proc?.name}.log`), "utf8")
        .split("\n")
        .slice(-80)
        .join("\n")
        .slice(-2048);
    }
    const terminated: k8s.V1ContainerStateTerminated = {
      exitCode,
      reason: exitCode === 0 ? "Completed" : exitCode === 137 ? "OOMKilled" : "Error",
      startedAt: c.state.running?.startedAt as Date,
      finishedAt: now(),
      ...(message ? { message } : {}),
    };
    if (exitCode === 137) terminated.reason = "Error";
    c.state = { terminated };
    c.ready = false;
    c.proc = undefined;
    const policy = pod.spec?.restartPolicy ?? "Always";
    if (!run.terminating && !run.done && (policy === "Always" || (policy === "OnFailure" && exitCode !== 0))) {
      c.lastState = { terminated };
      c.restartCount++;
      const backoff = Math.min(1000 * 2 ** (c.restartCount - 1), 30_000);
      c.state = { waiting: { reason: "CrashLoopBackOff", message: `back-off ${backoff / 1000}s restarting failed container=${c.name}` } };
      await this.writeStatus(pod, run);
      run.timers.push(
        setTimeout(() => {
          if (!run.terminating && !run.done) void this.startContainer(pod, run, spec, c, mounts).then(() => this.writeStatus(pod, run));
        }, backoff),
      );
      return;
    }
    if (run.containers.every((x) => x.state.terminated)) run.done = true;
    await this.writeStatus(pod, run);
  }

  private async killPod(run: PodRun, graceSeconds: number): Promise<void> {
    if (run.terminating) return;
    run.terminating = true;
    for (const t of run.timers) clearTimeout(t);
    await Promise.all(run.containers.map((c) => c.proc?.stop(graceSeconds * 1000)));
    this.pods.delete(run.uid);
  }

  private async prepareVolumes(pod: k8s.V1Pod, run: PodRun): Promise<Map<string, string>> {
    const ns = run.namespace;
    const volumes = new Map<string, string>();
    for (const v of pod.spec?.volumes ?? []) {
      const local = join(run.dir, "volumes", v.name);
      mkdirSync(local, { recursive: true });
      volumes.set(v.name, local);
      const write = (file: string, data: string | Buffer) => {
        mkdirSync(join(local, file, ".."), { recursive: true });
        writeFileSync(join(local, file), data);
      };
      if (v.secret) {
        const s = await this.core.readNamespacedSecret({ name: v.secret.secretName ?? "", namespace: ns });
        for (const [k, b64] of Object.entries(s.data ?? {})) write(k, Buffer.from(b64, "base64"));
      }
      if (v.configMap) {
        const cm = await this.core.readNamespacedConfigMap({ name: v.configMap.name ?? "", namespace: ns });
        for (const [k, d] of Object.entries(cm.data ?? {})) write(k, d);
      }
      for (const src of v.projected?.sources ?? []) {
        if (src.serviceAccountToken) {
          const tr = await this.core.createNamespacedServiceAccountToken({
            name: pod.spec?.serviceAccountName ?? "default",
            namespace: ns,
            body: {
              spec: {
                audiences: src.serviceAccountToken.audience ? [src.serviceAccountToken.audience] : [],
                expirationSeconds: src.serviceAccountToken.expirationSeconds ?? 3600,
                boundObjectRef: { kind: "Pod", apiVersion: "v1", name: run.name, uid: run.uid },
              },
            },
          });
          write(src.serviceAccountToken.path, tr.status?.token ?? "");
          // in-cluster config reads fixed paths that cannot exist here: hand the process a kubeconfig
          const cluster = this.kc.getCurrentCluster();
          write(
            "kubeconfig",
            JSON.stringify({
              apiVersion: "v1",
              kind: "Config",
              clusters: [{ name: "in-cluster", cluster: { server: cluster?.server, "certificate-authority-data": cluster?.caData } }],
              // tokenFile for client-go (kubectl); client-node ignores it, so the token itself too
              // (valid for the projected expirationSeconds: this agent does not rotate it)
              users: [{ name: "sa", user: { tokenFile: join(local, src.serviceAccountToken.path), token: tr.status?.token ?? "" } }],
              contexts: [{ name: "in-cluster", context: { cluster: "in-cluster", user: "sa", namespace: ns } }],
              "current-context": "in-cluster",
            }),
          );
        }
        if (src.configMap) {
          const cm = await this.core.readNamespacedConfigMap({ name: src.configMap.name ?? "", namespace: ns }).catch(() => undefined);
          for (const [k, d] of Object.entries(cm?.data ?? {})) write(k, d);
        }
        for (const item of src.downwardAPI?.items ?? []) write(item.path, item.fieldRef ? fieldValue(pod, run, item.fieldRef.fieldPath) : "");
      }
      for (const item of v.downwardAPI?.items ?? []) write(item.path, item.fieldRef ? fieldValue(pod, run, item.fieldRef.fieldPath) : "");
    }
    const mounts = new Map<string, string>();
    for (const c of pod.spec?.containers ?? []) {
      for (const m of c.volumeMounts ?? []) {
        const local = volumes.get(m.name);
        if (local) mounts.set(m.mountPath, m.subPath ? join(local, m.subPath) : local);
      }
    }
    return mounts;
  }

  /**
   * The variables a kubelet injects for each Service of the pod's namespace (enableServiceLinks,
   * on by default): NAME_SERVICE_HOST, NAME_SERVICE_PORT and NAME_SERVICE_PORT_<PORT NAME>. The
   * host is the Service's local address here, not its ClusterIP (nothing routes ClusterIPs on this
   * machine); the ports are the Service's ports. Docker-link style variables are not set.
   */
  private async serviceEnv(ns: string): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    const { items } = await this.core.listNamespacedService({ namespace: ns }).catch(() => ({ items: [] as k8s.V1Service[] }));
    for (const svc of items) {
      const ports = svc.spec?.ports ?? [];
      if (!svc.spec?.clusterIP || svc.spec.clusterIP === "None" || !ports.length) continue;
      // only Services with a selector (their endpoints are pods here); default/kubernetes keeps the
      // API server's own address set below
      if (!Object.keys(svc.spec.selector ?? {}).length) continue;
      const { ip, listeners } = await this.serviceProxy(svc);
      const served = ports.filter((p) => listeners.has(p.port));
      if (!served.length) continue;
      const name = (svc.metadata?.name ?? "").toUpperCase().replace(/-/g, "_");
      env[`${name}_SERVICE_HOST`] = ip;
      env[`${name}_SERVICE_PORT`] = String(served[0]?.port);
      for (const p of served) if (p.name) env[`${name}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, "_")}`] = String(p.port);
    }
    return env;
  }

  /**
   * A Service's local address, listening on each of its TCP ports: every connection goes to a
   * ready endpoint (looked up afresh per connection); with none ready the connection is closed, as
   * kube-proxy rejects it. This is kube-proxy's old userspace mode, on loopback.
   */
  private serviceProxy(svc: k8s.V1Service): Promise<{ ip: string; listeners: Map<number, Server> }> {
    const ns = svc.metadata?.namespace ?? "default";
    const svcName = svc.metadata?.name ?? "";
    const key = `${ns}/${svcName}`;
    let entry = this.services.get(key);
    if (!entry) {
      const n = this.nextServiceIp++;
      entry = Promise.resolve({ ip: `127.2.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`, listeners: new Map<number, Server>() });
      this.services.set(key, entry);
    }
    return entry.then(async (proxy) => {
      for (const port of svc.spec?.ports ?? []) {
        if ((port.protocol ?? "TCP") !== "TCP" || proxy.listeners.has(port.port)) continue;
        const server = createServer((client) => {
          this.forwarded.add(client);
          client.on("close", () => this.forwarded.delete(client));
          client.on("error", () => client.destroy());
          void this.endpointFor(ns, svcName, port.name ?? "").then((to) => {
            if (!to || client.destroyed) return void client.destroy();
            const upstream = connect(to, () => client.pipe(upstream).pipe(client));
            upstream.on("error", () => client.destroy());
            client.on("close", () => upstream.destroy());
          });
        });
        proxy.listeners.set(port.port, server);
        // a port this user may not bind (below 1024 without root) is left out, and so is its variable
        const bound = await new Promise<boolean>((resolve) => {
          server.once("error", () => resolve(false));
          server.listen(port.port, proxy.ip, () => resolve(true));
        });
        if (!bound) proxy.listeners.delete(port.port);
      }
      return proxy;
    });
  }

  /**
   * A ready endpoint of a Service port, chosen as kube-proxy would from the EndpointSlice controller's
   * work: the ready, not terminating pods its selector matches, at the port its targetPort names.
   * The slices themselves cannot help here: their API rejects loopback addresses like our pod IPs.
   */
  private async endpointFor(ns: string, service: string, portName: string): Promise<{ host: string; port: number } | undefined> {
    try {
      const svc = await this.core.readNamespacedService({ name: service, namespace: ns });
      const port = svc.spec?.ports?.find((p) => (p.name ?? "") === portName);
      const selector = Object.entries(svc.spec?.selector ?? {});
      if (!port || !selector.length) return undefined;
      const { items } = await this.core.listNamespacedPod({ namespace: ns, labelSelector: selector.map(([k, v]) => `${k}=${v}`).join(",") });
      const ready: { host: string; port: number }[] = [];
      for (const pod of items) {
        const ip = pod.status?.podIP;
        if (!ip || pod.metadata?.deletionTimestamp || pod.status?.conditions?.find((c) => c.type === "Ready")?.status !== "True") continue;
        const target = port.targetPort ?? port.port;
        const number =
          typeof target === "number"
            ? target
            : /^\d+$/.test(target)
              ? Number(target)
              : pod.spec?.containers.flatMap((c) => c.ports ?? []).find((p) => p.name === target)?.containerPort;
        if (number) ready.push({ host: ip, port: number });
      }
      return ready[Math.floor(Math.random() * ready.length)];
    } catch {
      return undefined;
    }
  }

  private async resolveEnv(pod: k8s.V1Pod, run: PodRun, spec: k8s.V1Container, mounts: Map<string, string>): Promise<Record<string, string>> {
    const ns = run.namespace;
    const env: Record<string, string> = {};
    const cluster = new URL(this.kc.getCurrentCluster()?.server ?? "https://127.0.0.1");
    // the variables a kubelet injects for the namespace's Services, then for the default kubernetes Service
    if (pod.spec?.enableServiceLinks !== false) Object.assign(env, await this.serviceEnv(ns));
    env.KUBERNETES_SERVICE_HOST = cluster.hostname;
    env.KUBERNETES_SERVICE_PORT = cluster.port || "443";
    for (const m of mounts.keys()) if (m === "/var/run/secrets/kubernetes.io/serviceaccount") env.KUBECONFIG = join(mounts.get(m) as string, "kubeconfig");
    for (const from of spec.envFrom ?? []) {
      let data: Record<string, string> = {};
      if (from.configMapRef)
        data =
          (
            await this.core
              .readNamespacedConfigMap({ name: from.configMapRef.name ?? "", namespace: ns })
              .catch((e) => (from.configMapRef?.optional ? undefined : Promise.reject(e)))
          )?.data ?? {};
      if (from.secretRef) {
        const s = await this.core
          .readNamespacedSecret({ name: from.secretRef.name ?? "", namespace: ns })
          .catch((e) => (from.secretRef?.optional ? undefined : Promise.reject(e)));
        data = Object.fromEntries(Object.entries(s?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));
      }
      for (const [k, v] of Object.entries(data)) env[`${from.prefix ?? ""}${k}`] = v;
    }
    for (const e of spec.env ?? []) {
      if (e.value !== undefined) env[e.name] = rewritePath(expand(e.value, env), mounts);
      else if (e.valueFrom?.fieldRef) env[e.name] = fieldValue(pod, run, e.valueFrom.fieldRef.fieldPath);
      else if (e.valueFrom?.resourceFieldRef)
        env[e.name] = String(spec.resources?.limits?.[e.valueFrom.resourceFieldRef.resource.replace(/^limits\./, "")] ?? "");
      else if (e.valueFrom?.secretKeyRef) {
        const ref = e.valueFrom.secretKeyRef;
        const s = await this.core.readNamespacedSecret({ name: ref.name ?? "", namespace: ns }).catch(() => undefined);
        const v = s?.data?.[ref.key];
        if (v === undefined && !ref.optional) throw new Error(`secret "${ref.name}" key "${ref.key}" not found`);
        if (v !== undefined) env[e.name] = Buffer.from(v, "base64").toString();
      } else if (e.valueFrom?.configMapKeyRef) {
        const ref = e.valueFrom.configMapKeyRef;
        const cm = await this.core.readNamespacedConfigMap({ name: ref.name ?? "", namespace: ns }).catch(() => undefined);
        const v = cm?.data?.[ref.key];
        if (v === undefined && !ref.optional) throw new Error(`configmap "${ref.name}" key "${ref.key}" not found`);
        if (v !== undefined) env[e.name] = v;
      }
    }
    return env;
  }

  private writeStatus(pod: k8s.V1Pod, run: PodRun): Promise<void> {
    // one write at a time per pod, each with the latest state
    run.writes = run.writes.then(() => this.patchStatus(pod, run)).catch(() => {});
    return run.writes;
  }

  private async patchStatus(pod: k8s.V1Pod, run: PodRun): Promise<void> {
    const t = now().toISOString();
    const containerStatuses = run.containers.map((c) => ({
      name: c.name,
      image: pod.spec?.containers.find((s) => s.name === c.name)?.image ?? "",
      imageID: "",
      containerID: c.proc ? `local://${c.proc.pid}` : undefined,
      ready: c.ready,
      started: !!c.state.running,
      restartCount: c.restartCount,
      state: c.state,
      ...(c.lastState ? { lastState: c.lastState } : {}),
    }));
    const all = run.containers;
    const failed = all.some((c) => (c.state.terminated?.exitCode ?? 0) !== 0);
    const phase = run.done
      ? failed
        ? "Failed"
        : "Succeeded"
      : all.some((c) => c.state.running || c.restartCount > 0 || c.state.terminated)
        ? "Running"
        : "Pending";
    const ready = phase === "Running" && all.every((c) => c.ready);
    const cond = (type: string, ok: boolean) => ({
      type,
      status: ok ? "True" : "False",
      lastTransitionTime: t,
      ...(ok ? {} : { reason: run.done ? "PodCompleted" : "ContainersNotReady" }),
    });
    const scheduled = pod.status?.conditions?.filter((c) => c.type === "PodScheduled") ?? [];
    const status = {
      phase,
      hostIP: "127.0.0.1",
      hostIPs: [{ ip: "127.0.0.1" }],
      podIP: run.ip,
      podIPs: [{ ip: run.ip }],
      startTime: run.startedAt,
      qosClass: pod.status?.qosClass,
      conditions: [...scheduled, cond("PodReadyToStartContainers", true), cond("Initialized", true), cond("ContainersReady", ready), cond("Ready", ready)],
      containerStatuses,
    };
    try {
      await this.core.patchNamespacedPodStatus({ name: run.name, namespace: run.namespace, body: { status } }, MERGE);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

function fieldValue(pod: k8s.V1Pod, run: PodRun, path: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return pod.metadata?.[m[1] as "labels" | "annotations"]?.[m[2] as string] ?? "";
  switch (path) {
    case "metadata.name":
      return run.name;
    case "metadata.namespace":
      return run.namespace;
    case "metadata.uid":
      return run.uid;
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.podIP":
    case "status.podIPs":
      return run.ip;
    case "status.hostIP":
    case "status.hostIPs":
      return "127.0.0.1";
    default:
      throw new Error(`unsupported fieldRef ${path}`);
  }
}

/** $(VAR) expansion as the kubelet does for env values, command and args; $$ escapes. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name: string | undefined) => (name === undefined ? "$" : (env[name] ?? all)));
}

/** A value naming a path under a volume mount points at the volume's local folder instead. */
function rewritePath(value: string, mounts: Map<string, string>): string {
  for (const [mountPath, local] of mounts) {
    if (value === mountPath || value.startsWith(`${mountPath}/`)) return local + value.slice(mountPath.length);
  }
  return value;
}
