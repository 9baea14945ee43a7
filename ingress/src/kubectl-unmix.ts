// `kubectl unmix`: the support console's operations from a terminal, as the operator named by the
// current kubeconfig (make installs it into .cache/bin as `kubectl-unmix`; kubectl finds plugins on
// PATH). It reaches the admin listener (127.0.0.1 in the worker pod) through `kubectl port-forward`
// to Service <release>-admin, or at --admin-url; the bearer token is one minted for the admin
// audience with a TokenRequest for --service-account (the chart's default audience refuses any
// other), else --token / UNMIX_ADMIN_TOKEN, else the kubeconfig user's own (token, OIDC or exec
// plugin; taken only when the chart's admin.tokenAudiences is empty). A Node script of the ingress
// package, not Go: it shares the project's Node, client library and the unmix.dev/support facts.
//   kubectl unmix [flags] jobs [--limit N] [-o wide|json]
//   kubectl unmix [flags] purge --number +49… | --user-id CC.… [--yes]
//   kubectl unmix [flags] broadcast status [-o json]
import { spawn } from "node:child_process";
import { createInterface } from "node:readline/promises";
import { parseArgs } from "node:util";
import { ADMIN_AUDIENCE } from "@unmix/api/support";
import { k8s } from "@unmix/core/kube";
import type { Campaign } from "./broadcast.ts";

const USAGE = `kubectl unmix: the unmix support console from a terminal

Usage:
  kubectl unmix [flags] jobs [--limit N] [-o wide|json]   recent messages (wide: with the sender's profile name)
  kubectl unmix [flags] purge --number +49… [--yes]       erase a user's data (or --user-id CC.…)
  kubectl unmix [flags] broadcast status [-o json]        policy-broadcast campaigns and their progress

Flags:
  -n, --namespace NS                the release's namespace (default: the context's, else unmix)
      --release NAME                the release's full name: Service NAME-admin (default unmix)
      --admin-url URL               the admin listener itself, instead of a port-forward
      --service-account NS/NAME     act as that ServiceAccount, with a token minted for it (TokenRequest)
      --audience AUD                the audience of that token (default ${ADMIN_AUDIENCE}, the chart's)
      --token TOKEN                 a bearer token (or UNMIX_ADMIN_TOKEN); default: the kubeconfig user's
      --kubeconfig FILE, --context NAME
`;

class UsageError extends Error {}

const { values: flags, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        namespace: { type: "string", short: "n" },
        release: { type: "string", default: "unmix" },
        "admin-url": { type: "string" },
        "service-account": { type: "string" },
        audience: { type: "string", default: ADMIN_AUDIENCE },
        token: { type: "string" },
        kubeconfig: { type: "string" },
        context: { type: "string" },
        limit: { type: "string", default: "50" },
        output: { type: "string", short: "o" },
        number: { type: "string" },
        "user-id": { type: "string" },
        yes: { type: "boolean", short: "y", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();

function kubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (flags.kubeconfig) kc.loadFromFile(flags.kubeconfig);
  else kc.loadFromDefault();
  if (flags.context) kc.setCurrentContext(flags.context);
  return kc;
}

async function bearerToken(kc: k8s.KubeConfig): Promise<string> {
  if (flags["service-account"]) {
    const [namespace, name] = flags["service-account"].split("/");
    if (!namespace || !name) throw new UsageError("--service-account is NAMESPACE/NAME");
    const tr = await kc.makeApiClient(k8s.CoreV1Api).createNamespacedServiceAccountToken({
      name,
      namespace,
      body: { spec: { audiences: [flags.audience as string], expirationSeconds: 600 } },
    });
    return tr.status?.token as string;
  }
  const given = flags.token ?? process.env.UNMIX_ADMIN_TOKEN;
  if (given) return given;
  const opts: { headers?: Record<string, string> } = { headers: {} };
  await kc.applyToHTTPSOptions(opts);
  const own = /^Bearer (.+)$/.exec(opts.headers?.Authorization ?? "")?.[1];
  if (!own) throw new UsageError("the kubeconfig user has no bearer token (a client certificate?): use --service-account NS/NAME or --token");
  return own;
}

/** `kubectl port-forward` to the admin Service on a free local port; resolves with its URL and a stop function. */
async function portForward(kc: k8s.KubeConfig): Promise<{ url: string; stop: () => void }> {
  const namespace = flags.namespace ?? (kc.getContextObject(kc.getCurrentContext())?.namespace || "unmix");
  const args = [
    ...(flags.kubeconfig ? ["--kubeconfig", flags.kubeconfig] : []),
    ...(flags.context ? ["--context", flags.context] : []),
    "-n",
    namespace,
    "port-forward",
    `svc/${flags.release}-admin`,
    ":admin",
  ];
  const child = spawn("kubectl", args, { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const port = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out)?.[1];
      if (port) resolve(`http://127.0.0.1:${port}`);
    });
    child.on("error", (e) => reject(new Error(`kubectl port-forward could not start: ${e.message}`)));
    child.on("exit", (code) => reject(new Error(`kubectl port-forward exited (${code}): ${err.trim()}`)));
  });
  return { url, stop: () => child.kill() };
}

async function call(base: string, token: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const json = (() => {
    try {
      return JSON.parse(text) as { message?: string; error?: string };
    } catch {
      return { message: text };
    }
  })();
  if (res.ok) return json;
  if (res.status === 401)
    throw new Error(
      `not authenticated: the admin listener refused the token (unknown, expired, or minted for another audience than the one it takes; try --service-account NS/NAME, audience ${flags.audience})`,
    );
  if (res.status === 403) throw new Error(`forbidden: ${json.message ?? "a permission is missing"}`);
  throw new Error(`${method} ${path}: ${res.status} ${json.message ?? json.error ?? text}`);
}

interface Job {
  name: string;
  createdAt?: string;
  profileName: string | null;
  kind: string;
  format: string;
  status: string;
  reason: string | null;
  failure: string | null;
  totalSeconds: number | null;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

async function confirm(question: string): Promise<boolean> {
  if (flags.yes) return true;
  if (!process.stdin.isTTY) throw new UsageError("purge erases a user's data: confirm with --yes");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(`${question} [y/N] `);
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}

async function main(): Promise<number> {
  const [command, sub] = positionals;
  if (flags.help || !command) {
    process.stdout.write(USAGE);
    return flags.help ? 0 : 2;
  }
  if (!["jobs", "purge", "broadcast"].includes(command)) throw new UsageError(`unknown command ${command}`);
  if (command === "broadcast" && sub !== "status") throw new UsageError("broadcast: the one subcommand is `status` (start campaigns from the console page)");
  if (command === "purge" && !flags.number === !flags["user-id"]) throw new UsageError("purge needs --number +49… or --user-id CC.…");
  const kc = kubeConfig();
  const token = await bearerToken(kc);
  const forward = flags["admin-url"] ? undefined : await portForward(kc);
  const base = flags["admin-url"] ?? (forward?.url as string);
  try {
    if (command === "jobs") {
      const { jobs, invalid } = (await call(base, token, "GET", `/admin/jobs?limit=${encodeURIComponent(flags.limit as string)}`)) as {
        jobs: Job[];
        invalid: number;
      };
      if (flags.output === "json") {
        process.stdout.write(`${JSON.stringify({ jobs, invalid }, null, 2)}\n`);
        return 0;
      }
      const wide = flags.output === "wide";
      const rows = [["NAME", "CREATED", "KIND", "FORMAT", "STATUS", "REASON", "FAILURE", "SECONDS", ...(wide ? ["PROFILE NAME"] : [])]];
      for (const j of jobs)
        rows.push([
          j.name,
          j.createdAt ?? "",
          j.kind,
          j.format,
          j.status,
          j.reason ?? "",
          j.failure ?? "",
          j.totalSeconds === null ? "" : String(j.totalSeconds),
          ...(wide ? [j.profileName ?? ""] : []),
        ]);
      process.stdout.write(`${jobs.length ? table(rows) : "no recent jobs"}\n`);
      if (invalid) process.stdout.write(`${invalid} SeparationJob(s) could not be read (refused by the schema) and are not listed\n`);
      return 0;
    }
    if (command === "purge") {
      const who = flags.number ? { phone: flags.number } : { userId: flags["user-id"] as string };
      if (!(await confirm(`Erase every piece of data held for ${flags.number ?? flags["user-id"]} and opt them out?`))) {
        process.stderr.write("nothing done\n");
        return 1;
      }
      const erased = (await call(base, token, "POST", "/admin/purge", who)) as Record<string, number | boolean>;
      process.stdout.write(
        `purged: ${Object.entries(erased)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ")}\n`,
      );
      return 0;
    }
    const { campaigns } = (await call(base, token, "GET", "/admin/broadcasts")) as { campaigns: Campaign[] };
    if (flags.output === "json") {
      process.stdout.write(`${JSON.stringify({ campaigns }, null, 2)}\n`);
      return 0;
    }
    const rows = [["ID", "STATE", "TOTAL", "SENT", "TEXT", "TEMPLATE", "SKIPPED", "FAILED", "UNCONFIRMED", "STARTED", "FINISHED"]];
    for (const c of campaigns)
      rows.push([
        c.id,
        c.state,
        ...[c.total, c.sent, c.byKind.text, c.byKind.template, c.skipped, c.failed, c.unconfirmed].map(String),
        c.startedAt,
        c.finishedAt ?? "",
      ]);
    process.stdout.write(`${campaigns.length ? table(rows) : "no broadcast campaigns"}\n`);
    return 0;
  } finally {
    forward?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`kubectl unmix: ${err.message}\n${err instanceof UsageError ? `\n${USAGE}` : ""}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
