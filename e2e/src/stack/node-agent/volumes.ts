// Volumes become folders under the pod's folder. A mount path cannot exist on this machine, so
// values naming a path under a mount point at the volume's folder instead (rewritePath).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import type { AgentContext } from "./context.ts";
import { fieldValue, type PodRun } from "./pod-run.ts";

/** Fills each volume's folder (emptyDir, secret, configMap, downwardAPI, projected) and returns mount path → local folder. */
export async function prepareVolumes(ctx: AgentContext, pod: k8s.V1Pod, run: PodRun): Promise<Map<string, string>> {
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
      const s = await ctx.core.readNamespacedSecret({ name: v.secret.secretName ?? "", namespace: ns });
      for (const [k, b64] of Object.entries(s.data ?? {})) write(k, Buffer.from(b64, "base64"));
    }
    if (v.configMap) {
      const cm = await ctx.core.readNamespacedConfigMap({ name: v.configMap.name ?? "", namespace: ns });
      for (const [k, d] of Object.entries(cm.data ?? {})) write(k, d);
    }
    for (const src of v.projected?.sources ?? []) {
      if (src.serviceAccountToken) {
        const tr = await ctx.core.createNamespacedServiceAccountToken({
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
        const cluster = ctx.kc.getCurrentCluster();
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
        const cm = await ctx.core.readNamespacedConfigMap({ name: src.configMap.name ?? "", namespace: ns }).catch(() => undefined);
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

/** A value naming a path under a volume mount points at the volume's local folder instead. */
export function rewritePath(value: string, mounts: Map<string, string>): string {
  for (const [mountPath, local] of mounts) {
    if (value === mountPath || value.startsWith(`${mountPath}/`)) return local + value.slice(mountPath.length);
  }
  return value;
}
