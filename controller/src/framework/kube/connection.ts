// Where the API server is and how to authenticate, without @kubernetes/client-node: loading that
// package alone costs about 80 MB of resident memory (its generated clients for every API), more
// than half of the controller's budget. Supported: the in-cluster service account (the token is
// re-read, since bound tokens rotate) and kubeconfig files with a bearer token, a token file, a
// client certificate or basic auth. A kubeconfig whose user needs an exec plugin or an
// auth-provider is handed to client-node, loaded only then.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";

export interface KubeConnection {
  server: string;
  /** PEM */
  ca?: string;
  cert?: string;
  key?: string;
  insecureSkipTlsVerify?: boolean;
  tlsServerName?: string;
  /** The Authorization header for the next request, if any. */
  authorization(): Promise<string | undefined>;
  /** The namespace of the context (or the pod's own). */
  namespace?: string;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

interface NamedCluster {
  name: string;
  cluster: Record<string, unknown>;
}
interface NamedUser {
  name: string;
  user: Record<string, unknown>;
}
interface NamedContext {
  name: string;
  context: { cluster: string; user: string; namespace?: string };
}

/** A file re-read at most every `everyMs` (rotated tokens). */
function rereading(path: string, everyMs = 60_000): () => string {
  let value = "";
  let readAt = 0;
  return () => {
    if (!value || Date.now() - readAt > everyMs) {
      value = readFileSync(path, "utf8").trim();
      readAt = Date.now();
    }
    return value;
  };
}

function inClusterConnection(): KubeConnection {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) throw new Error("not in a cluster: KUBERNETES_SERVICE_HOST is not set");
  const token = rereading(join(SA_DIR, "token"));
  let namespace: string | undefined;
  try {
    namespace = readFileSync(join(SA_DIR, "namespace"), "utf8").trim();
  } catch {
    namespace = undefined;
  }
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca: readFileSync(join(SA_DIR, "ca.crt"), "utf8"),
    authorization: async () => `Bearer ${token()}`,
    ...(namespace ? { namespace } : {}),
  };
}

export async function kubeconfigConnection(path: string): Promise<KubeConnection> {
  const text = readFileSync(path, "utf8");
  // JSON is YAML too, and needs no parser to load (the yaml package costs ~10 MB)
  const parse: (s: string) => unknown = text.trimStart().startsWith("{") ? JSON.parse : (await import("yaml")).parse;
  const doc = parse(text) as {
    "current-context"?: string;
    clusters?: NamedCluster[];
    users?: NamedUser[];
    contexts?: NamedContext[];
  };
  const ctx = doc.contexts?.find((c) => c.name === doc["current-context"]) ?? doc.contexts?.[0];
  if (!ctx) throw new Error(`${path}: no context`);
  const cluster = doc.clusters?.find((c) => c.name === ctx.context.cluster)?.cluster;
  const user = doc.users?.find((u) => u.name === ctx.context.user)?.user ?? {};
  if (!cluster) throw new Error(`${path}: no cluster ${ctx.context.cluster}`);
  const base = dirname(path);
  const file = (p: unknown) => readFileSync(isAbsolute(String(p)) ? String(p) : join(base, String(p)), "utf8");
  const pem = (data: unknown, filePath: unknown) =>
    typeof data === "string" ? Buffer.from(data, "base64").toString("utf8") : filePath ? file(filePath) : undefined;

  let authorization: () => Promise<string | undefined>;
  if (user.exec || user["auth-provider"]) {
    authorization = await clientNodeAuthorization(path);
  } else if (typeof user.token === "string") {
    const token = user.token;
    authorization = async () => `Bearer ${token}`;
  } else if (user.tokenFile) {
    const token = rereading(isAbsolute(String(user.tokenFile)) ? String(user.tokenFile) : join(base, String(user.tokenFile)));
    authorization = async () => `Bearer ${token()}`;
  } else if (user.username) {
    const basic = Buffer.from(`${user.username}:${user.password ?? ""}`).toString("base64");
    authorization = async () => `Basic ${basic}`;
  } else {
    authorization = async () => undefined;
  }
  const ca = pem(cluster["certificate-authority-data"], cluster["certificate-authority"]);
  const cert = pem(user["client-certificate-data"], user["client-certificate"]);
  const key = pem(user["client-key-data"], user["client-key"]);
  return {
    server: String(cluster.server).replace(/\/+$/, ""),
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(cluster["insecure-skip-tls-verify"] === true ? { insecureSkipTlsVerify: true } : {}),
    ...(typeof cluster["tls-server-name"] === "string" ? { tlsServerName: cluster["tls-server-name"] } : {}),
    authorization,
    ...(ctx.context.namespace ? { namespace: ctx.context.namespace } : {}),
  };
}

/** Exec plugins and auth-providers, through client-node (loaded only for them). */
async function clientNodeAuthorization(path: string): Promise<() => Promise<string | undefined>> {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  return async () => {
    const options: { headers?: Record<string, string> } = {};
    await kc.applyToHTTPSOptions(options as never);
    return options.headers?.Authorization ?? options.headers?.authorization;
  };
}

/** KUBECONFIG (its first file), else ~/.kube/config, else the in-cluster service account. */
export async function loadKubeConnection(env: Record<string, string | undefined> = process.env): Promise<KubeConnection> {
  const candidates = [...(env.KUBECONFIG ? env.KUBECONFIG.split(":").filter(Boolean) : []), join(homedir(), ".kube", "config")];
  for (const c of candidates) {
    try {
      readFileSync(c);
    } catch {
      continue;
    }
    return kubeconfigConnection(c);
  }
  return inClusterConnection();
}
