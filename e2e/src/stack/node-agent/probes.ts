// Readiness and liveness probes (httpGet, tcpSocket) against the pod IP: readiness is written to
// the pod's status, a failed liveness probe kills the container, which restarts by its policy.
import { connect } from "node:net";
import type * as k8s from "@kubernetes/client-node";
import type { ManagedProcess } from "../processes.ts";
import { type PodRun, type RunningContainer, writeStatus } from "./pod-run.ts";

/** Probes one started container until it exits, is replaced by a restart, or its pod is done. */
export function startProbes(core: k8s.CoreV1Api, pod: k8s.V1Pod, run: PodRun, spec: k8s.V1Container, c: RunningContainer, proc: ManagedProcess): void {
  for (const probe of [spec.readinessProbe, spec.livenessProbe]) {
    if (!probe) continue;
    const liveness = probe === spec.livenessProbe;
    const period = (probe.periodSeconds ?? 10) * 1000;
    const first = (probe.initialDelaySeconds ?? 0) * 1000;
    const tick = async () => {
      if (c.proc !== proc || !proc.alive() || run.done) return;
      const ok = await check(probe, run, spec);
      if (liveness) {
        c.probeFailures = ok ? 0 : c.probeFailures + 1;
        if (c.probeFailures >= (probe.failureThreshold ?? 3)) proc.kill("SIGKILL");
      } else if (ok !== c.ready) {
        c.ready = ok;
        await writeStatus(core, pod, run);
      }
      run.timers.push(setTimeout(() => void tick(), Math.min(period, ok || liveness ? period : 1000)));
    };
    run.timers.push(setTimeout(() => void tick(), first));
  }
}

async function check(probe: k8s.V1Probe, run: PodRun, spec: k8s.V1Container): Promise<boolean> {
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
