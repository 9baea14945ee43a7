// Service forwarding, as kube-proxy's old userspace mode on loopback: with no kube-proxy and no
// routed ClusterIPs here, each Service gets a local address (127.2.x.y) where connections are
// forwarded to a ready pod, and pods see that address in the kubelet's Service variables.
import { connect, createServer, type Server, type Socket } from "node:net";
import type * as k8s from "@kubernetes/client-node";

interface ServiceProxy {
  ip: string;
  /** One forwarding listener per Service port. */
  listeners: Map<number, Server>;
}

export class ServiceForwarder {
  private readonly core: k8s.CoreV1Api;
  /** Service (namespace/name) → its local address and listeners. */
  private readonly services = new Map<string, Promise<ServiceProxy>>();
  private readonly forwarded = new Set<Socket>();
  private nextIp = 1;

  constructor(core: k8s.CoreV1Api) {
    this.core = core;
  }

  /**
   * The variables a kubelet injects for each Service of the pod's namespace (enableServiceLinks,
   * on by default): NAME_SERVICE_HOST, NAME_SERVICE_PORT and NAME_SERVICE_PORT_<PORT NAME>. The
   * host is the Service's local address here, not its ClusterIP (nothing routes ClusterIPs on this
   * machine); the ports are the Service's ports. Docker-link style variables are not set.
   */
  async env(ns: string): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    const { items } = await this.core.listNamespacedService({ namespace: ns }).catch(() => ({ items: [] as k8s.V1Service[] }));
    for (const svc of items) {
      const ports = svc.spec?.ports ?? [];
      if (!svc.spec?.clusterIP || svc.spec.clusterIP === "None" || !ports.length) continue;
      // only Services with a selector (their endpoints are pods here); default/kubernetes keeps the
      // API server's own address set by the caller
      if (!Object.keys(svc.spec.selector ?? {}).length) continue;
      const { ip, listeners } = await this.proxy(svc);
      const served = ports.filter((p) => listeners.has(p.port));
      if (!served.length) continue;
      const name = (svc.metadata?.name ?? "").toUpperCase().replace(/-/g, "_");
      env[`${name}_SERVICE_HOST`] = ip;
      env[`${name}_SERVICE_PORT`] = String(served[0]?.port);
      for (const p of served) if (p.name) env[`${name}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, "_")}`] = String(p.port);
    }
    return env;
  }

  /** Closes every listener and every forwarded connection. */
  async close(): Promise<void> {
    for (const entry of this.services.values()) {
      const { listeners } = await entry.catch(() => ({ listeners: new Map<number, Server>() }));
      for (const l of listeners.values()) l.close();
    }
    for (const socket of this.forwarded) socket.destroy();
  }

  /**
   * A Service's local address, listening on each of its TCP ports: every connection goes to a
   * ready endpoint (looked up afresh per connection); with none ready the connection is closed, as
   * kube-proxy rejects it.
   */
  private proxy(svc: k8s.V1Service): Promise<ServiceProxy> {
    const ns = svc.metadata?.namespace ?? "default";
    const svcName = svc.metadata?.name ?? "";
    const key = `${ns}/${svcName}`;
    let entry = this.services.get(key);
    if (!entry) {
      const n = this.nextIp++;
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
}
