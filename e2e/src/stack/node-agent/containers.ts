// Each container is a local process: the image name maps to a local command, the exit becomes the
// container's terminated state (with its termination message), and restartPolicy is honoured with
// the kubelet's back-off.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import { spawnManaged } from "../processes.ts";
import type { AgentContext } from "./context.ts";
import { expand, resolveEnv } from "./env.ts";
import { type PodRun, type RunningContainer, writeStatus } from "./pod-run.ts";
import { startProbes } from "./probes.ts";
import { rewritePath } from "./volumes.ts";

/** The kubelet's back-off for a pod whose sync failed (10 s), reached by doubling from 1 s. */
const CONFIG_RETRY_MAX_MS = 10_000;

export async function startContainer(
  ctx: AgentContext,
  pod: k8s.V1Pod,
  run: PodRun,
  spec: k8s.V1Container,
  c: RunningContainer,
  mounts: Map<string, string>,
): Promise<void> {
  const image = spec.image ?? "";
  const mapping = ctx.images[image] ?? ctx.images[image.replace(/@sha256:.*$/, "").replace(/:[^/:]+$/, "")];
  if (!mapping) {
    c.state = { waiting: { reason: "ErrImagePull", message: `image "${image}" is not mapped to a local command on this node` } };
    return;
  }
  let env: Record<string, string>;
  try {
    env = await resolveEnv(ctx, pod, run, spec, mounts);
  } catch (err) {
    // as the kubelet: the container waits as CreateContainerConfigError and is tried again, since a
    // Secret may come later or the API server be back (one restarting while the pod started left the
    // pod waiting for good, and its message unanswered)
    c.state = { waiting: { reason: "CreateContainerConfigError", message: (err as Error).message } };
    const backoff = Math.min(1000 * 2 ** c.configRetries++, CONFIG_RETRY_MAX_MS);
    run.timers.push(
      setTimeout(() => {
        if (run.terminating || run.done) return;
        const was = c.state.waiting?.message;
        // a status write only when something changed, as a kubelet writes
        void startContainer(ctx, pod, run, spec, c, mounts).then(() => (c.state.waiting?.message === was ? undefined : writeStatus(ctx.core, pod, run)));
      }, backoff),
    );
    return;
  }
  c.configRetries = 0;
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
  c.state = { running: { startedAt: new Date() } };
  void proc.exited.then((code) => onExit(ctx, pod, run, spec, c, code, mounts));
  startProbes(ctx.core, pod, run, spec, c, proc);
}

async function onExit(
  ctx: AgentContext,
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
    reason: exitCode === 0 ? "Completed" : "Error",
    startedAt: c.state.running?.startedAt as Date,
    finishedAt: new Date(),
    ...(message ? { message } : {}),
  };
  c.state = { terminated };
  c.ready = false;
  c.proc = undefined;
  const policy = pod.spec?.restartPolicy ?? "Always";
  if (!run.terminating && !run.done && (policy === "Always" || (policy === "OnFailure" && exitCode !== 0))) {
    c.lastState = { terminated };
    c.restartCount++;
    const backoff = Math.min(1000 * 2 ** (c.restartCount - 1), 30_000);
    c.state = { waiting: { reason: "CrashLoopBackOff", message: `back-off ${backoff / 1000}s restarting failed container=${c.name}` } };
    await writeStatus(ctx.core, pod, run);
    run.timers.push(
      setTimeout(() => {
        if (!run.terminating && !run.done) void startContainer(ctx, pod, run, spec, c, mounts).then(() => writeStatus(ctx.core, pod, run));
      }, backoff),
    );
    return;
  }
  if (run.containers.every((x) => x.state.terminated)) run.done = true;
  await writeStatus(ctx.core, pod, run);
}
