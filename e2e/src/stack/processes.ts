// Child processes of the stack: each in its own process group, logging to a file, stopped as a
// group. A detached reaper kills every group if this process dies without stopping them, so no
// server outlives a crashed or interrupted test run.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export interface ManagedProcess {
  name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  stop(graceMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  alive(): boolean;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  dir: string;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

const live = new Set<number>();
let reaperPidFile: string | undefined;

function registerGroup(pid: number, dir: string) {
  live.add(pid);
  reaperPidFile ??= join(dir, "..", `reaper-${process.pid}.pids`);
  writeFileSync(reaperPidFile, [...live].join("\n"));
  startReaper(reaperPidFile);
}

let reaper: ChildProcess | undefined;
function startReaper(pidFile: string) {
  if (reaper) return;
  // A tiny shell loop outliving us: when our pid disappears, it kills every group listed.
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; for g in $(cat '${pidFile}' 2>/dev/null); do kill -TERM -- -$g 2>/dev/null; done; sleep 2; for g in $(cat '${pidFile}' 2>/dev/null); do kill -KILL -- -$g 2>/dev/null; done; rm -f '${pidFile}'`;
  reaper = spawn("/bin/sh", ["-c", script], { detached: true, stdio: "ignore" });
  reaper.unref();
}

function forgetGroup(pid: number) {
  live.delete(pid);
  if (reaperPidFile) writeFileSync(reaperPidFile, [...live].join("\n"));
}

function killGroup(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => {
    for (const pid of live) killGroup(pid, "SIGKILL");
    process.exit(130);
  });
}
process.once("exit", () => {
  for (const pid of live) killGroup(pid, "SIGKILL");
});

export function spawnManaged(o: SpawnOptions): ManagedProcess {
  const logFile = join(o.dir, `${o.name}.log`);
  const log = createWriteStream(logFile, { flags: "a" });
  const child = spawn(o.command, o.args, {
    cwd: o.cwd ?? o.dir,
    env: { ...process.env, ...o.env } as NodeJS.ProcessEnv,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error(`${o.name}: could not start ${o.command}`);
  const pid = child.pid;
  registerGroup(pid, o.dir);
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  let running = true;
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      running = false;
      forgetGroup(pid);
      // the group may still hold grandchildren
      killGroup(pid, "SIGKILL");
      resolve(code ?? signal ?? "unknown");
    });
    child.once("error", (err) => {
      running = false;
      forgetGroup(pid);
      log.write(`spawn error: ${err.message}\n`);
      resolve("error");
    });
  });
  child.unref();
  return {
    name: o.name,
    pid,
    logFile,
    exited,
    alive: () => running,
    kill: (signal = "SIGKILL") => killGroup(pid, signal),
    async stop(graceMs = 5000) {
      if (!running) return;
      killGroup(pid, "SIGTERM");
      // the grace timer is cancelled once the process is gone, so it never holds the test run open
      const grace = new AbortController();
      const timeout = sleep(graceMs, "timeout", { signal: grace.signal }).catch(() => "exited");
      const first = await Promise.race([exited, timeout]);
      grace.abort();
      if (first === "timeout") {
        killGroup(pid, "SIGKILL");
        await exited;
      }
    },
  };
}

/** Polls `check` until it returns true; fails with the process's log tail when it exits first. */
export async function waitUntil(what: string, check: () => Promise<boolean>, opts: { timeoutMs?: number; process?: ManagedProcess } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    if (opts.process && !opts.process.alive()) throw new Error(`${what}: process exited early; see ${opts.process.logFile}`);
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`${what}: not ready after ${opts.timeoutMs ?? 60_000} ms${opts.process ? `; see ${opts.process.logFile}` : ""}`);
}

/** A server that tests may stop, crash (SIGKILL) and start again on the same port and data. */
export interface Restartable {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Hard kill (SIGKILL), as a crash would. */
  crash(): Promise<void>;
  restart(): Promise<void>;
}

export async function restartable(launch: () => Promise<ManagedProcess>): Promise<Restartable> {
  let proc: ManagedProcess | undefined;
  const start = async () => {
    proc = await launch();
  };
  await start();
  return {
    start,
    stop: async () => proc?.stop(),
    crash: async () => {
      proc?.kill("SIGKILL");
      await proc?.exited;
    },
    async restart() {
      await proc?.stop();
      await start();
    },
  };
}
