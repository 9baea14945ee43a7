// The reason of a failed Kubernetes API call, from its Status body or its HTTP code. Apart from
// kube.ts so that the controller, which talks to the API server without @kubernetes/client-node to
// save memory, reads errors the same way without loading that package.

/** The API's Status reason of a failed call (AlreadyExists, Conflict, NotFound, …). */
export function apiReason(err: unknown): string | undefined {
  const e = err as { code?: unknown; body?: unknown };
  if (typeof e?.code !== "number") return undefined;
  try {
    const body = typeof e.body === "string" ? JSON.parse(e.body) : e.body;
    if (body?.reason) return String(body.reason);
  } catch {
    // not a Status body
  }
  return ({ 404: "NotFound", 409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests" } as Record<number, string>)[e.code];
}
