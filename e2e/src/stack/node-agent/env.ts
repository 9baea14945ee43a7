// A container's environment as a kubelet builds it: the Service variables, envFrom, then env with
// literal values ($(VAR) expanded), fieldRef, resourceFieldRef, secretKeyRef and configMapKeyRef.
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import type { AgentContext } from "./context.ts";
import { fieldValue, type PodRun } from "./pod-run.ts";
import { rewritePath } from "./volumes.ts";

export async function resolveEnv(
  ctx: AgentContext,
  pod: k8s.V1Pod,
  run: PodRun,
  spec: k8s.V1Container,
  mounts: Map<string, string>,
): Promise<Record<string, string>> {
  const ns = run.namespace;
  const env: Record<string, string> = {};
  const cluster = new URL(ctx.kc.getCurrentCluster()?.server ?? "https://127.0.0.1");
  // the variables a kubelet injects for the namespace's Services, then for the default kubernetes Service
  if (pod.spec?.enableServiceLinks !== false) Object.assign(env, await ctx.services.env(ns));
  env.KUBERNETES_SERVICE_HOST = cluster.hostname;
  env.KUBERNETES_SERVICE_PORT = cluster.port || "443";
  for (const m of mounts.keys()) if (m === "/var/run/secrets/kubernetes.io/serviceaccount") env.KUBECONFIG = join(mounts.get(m) as string, "kubeconfig");
  for (const from of spec.envFrom ?? []) {
    let data: Record<string, string> = {};
    if (from.configMapRef)
      data =
        (
          await ctx.core
            .readNamespacedConfigMap({ name: from.configMapRef.name ?? "", namespace: ns })
            .catch((e) => (from.configMapRef?.optional ? undefined : Promise.reject(e)))
        )?.data ?? {};
    if (from.secretRef) {
      const s = await ctx.core
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
      const s = await ctx.core.readNamespacedSecret({ name: ref.name ?? "", namespace: ns }).catch(() => undefined);
      const v = s?.data?.[ref.key];
      if (v === undefined && !ref.optional) throw new Error(`secret "${ref.name}" key "${ref.key}" not found`);
      if (v !== undefined) env[e.name] = Buffer.from(v, "base64").toString();
    } else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const cm = await ctx.core.readNamespacedConfigMap({ name: ref.name ?? "", namespace: ns }).catch(() => undefined);
      const v = cm?.data?.[ref.key];
      if (v === undefined && !ref.optional) throw new Error(`configmap "${ref.name}" key "${ref.key}" not found`);
      if (v !== undefined) env[e.name] = v;
    }
  }
  return env;
}

/** $(VAR) expansion as the kubelet does for env values, command and args; $$ escapes. */
export function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name: string | undefined) => (name === undefined ? "$" : (env[name] ?? all)));
}
