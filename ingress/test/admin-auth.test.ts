// Who may do what on the admin listener, on the real API server (RBAC, a service-account signer):
// operators are ServiceAccounts with tokens for the admin audience, bound to ClusterRoles with verbs
// on unmix.dev/support. A read-only operator lists and is refused a purge that then changes nothing;
// a purge operator purges and the audit trail names it; forged, expired, revoked and other-audience
// tokens are refused; the shared static token is an opt-in that must be asked for.
import assert from "node:assert/strict";
import { createSign } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ADMIN_AUDIENCE } from "@unmix/api/support";
import { ConfigError } from "@unmix/core/config";
import { k8s } from "@unmix/core/kube";
import { userKey } from "@unmix/core/privacy";
import { makeOperator, OPERATORS_NAMESPACE } from "@unmix/e2e/operators";
import { SHARED_TOKEN_OPERATOR } from "../src/admin-auth.ts";
import { parseIngressConfig } from "../src/config.ts";
import { messageRef } from "../src/envelope.ts";
import { BUCKETS, STREAMS } from "../src/nats.ts";
import { type Harness, startHarness, streamMessages, USER_KEY_SECRET, until } from "./harness.ts";

let h: Harness;
let kc: k8s.KubeConfig;
before(async () => {
  h = await startHarness({ env: { ADMIN_AUTH_CACHE_SECONDS: "1" } });
  kc = h.stack.kube?.kc as k8s.KubeConfig;
});
after(async () => {
  await h?.stop();
});

const admin = (token: string, path: string, init: RequestInit = {}) =>
  fetch(`${h.ingress.adminUrl}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init.headers } });
const purge = (token: string, waId: string) => admin(token, "/admin/purge", { method: "POST", body: JSON.stringify({ phone: `+${waId}` }) });

let seq = 0;
/** A user with an entry in unmix_active (what a purge erases), after their `help` was handled. */
async function activeUser() {
  const u = { waId: `4915113${String(++seq).padStart(4, "0")}88`, name: `Operator Tester ${seq}` };
  const sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
  const processed = await h.nats.kv(BUCKETS.processed);
  await until("the worker to handle it", async () => ((await processed.get(messageRef(sent.id)))?.operation === "PUT" ? true : undefined));
  return u;
}
const isActive = async (waId: string) => (await (await h.nats.kv(BUCKETS.active)).get(userKey(waId, USER_KEY_SECRET)))?.operation === "PUT";
const adminEntries = async () =>
  (await streamMessages(h.nats, STREAMS.audit, "unmix.audit.admin")).map((m) => JSON.parse(m.data) as { action: string; operator: string; outcome: string });

/** A service-account token signed with the API server's own key, as TokenRequest would make it, expiring at `exp`. */
function signedServiceAccountToken(sa: { name: string; uid: string }, exp: number): string {
  const key = readFileSync(join(dirname(h.stack.kube?.caFile as string), "sa.key"), "utf8");
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const header = b64({ alg: "RS256", typ: "JWT" });
  const claims = b64({
    iss: h.stack.kube?.server,
    aud: [ADMIN_AUDIENCE],
    sub: `system:serviceaccount:${OPERATORS_NAMESPACE}:${sa.name}`,
    iat: Math.min(now, exp - 600),
    nbf: Math.min(now, exp - 600),
    exp,
    "kubernetes.io": { namespace: OPERATORS_NAMESPACE, serviceaccount: { name: sa.name, uid: sa.uid } },
  });
  const signature = createSign("RSA-SHA256").update(`${header}.${claims}`).sign(key).toString("base64url");
  return `${header}.${claims}.${signature}`;
}

describe("who may do what on the admin listener", () => {
  test("a read-only operator lists, and is refused a purge (403 naming the permission) that erases and audits nothing", async () => {
    const reader = await makeOperator(kc, "support-reader", ["list", "get"]);
    const u = await activeUser();
    assert.equal((await admin(reader.token, "/admin/jobs")).status, 200);
    const before = (await adminEntries()).length;
    const refused = await purge(reader.token, u.waId);
    assert.equal(refused.status, 403);
    const body = (await refused.json()) as { missing: Record<string, string>; message: string };
    assert.deepEqual(body.missing, { group: "unmix.dev", resource: "support", verb: "purge" });
    assert.match(body.message, new RegExp(`${reader.username} may not purge unmix.dev/support`));
    assert.equal(
      (await admin(reader.token, "/admin/broadcasts", { method: "POST", body: JSON.stringify({ text: "hi", idempotencyKey: "refused" }) })).status,
      403,
    );
    assert.ok(await isActive(u.waId), "the user's data is still there");
    assert.equal((await adminEntries()).length, before, "a refused request leaves no audit entry (nothing was done)");
  });

  test("P5: a purge operator purges, and the audit trail names its ServiceAccount", async () => {
    const purger = await makeOperator(kc, "support-purger", ["list", "purge"]);
    const u = await activeUser();
    const res = await purge(purger.token, u.waId);
    assert.equal(res.status, 200);
    assert.ok(((await res.json()) as { keyValueEntries: number }).keyValueEntries > 0);
    assert.equal(await isActive(u.waId), false, "erased");
    const mine = (await adminEntries()).filter((e) => e.action === "purge").slice(-2);
    assert.deepEqual(
      mine.map((e) => [e.outcome, e.operator]),
      [
        ["started", `system:serviceaccount:${OPERATORS_NAMESPACE}:support-purger`],
        ["done", `system:serviceaccount:${OPERATORS_NAMESPACE}:support-purger`],
      ],
    );
    // a role that may purge but not broadcast: refused there
    assert.equal(
      (await admin(purger.token, "/admin/broadcasts", { method: "POST", body: JSON.stringify({ text: "hi", idempotencyKey: "refused" }) })).status,
      403,
    );
  });

  test("an operator with no binding is authenticated but may do nothing", async () => {
    const nobody = await makeOperator(kc, "support-nobody", []);
    const res = await admin(nobody.token, "/admin/jobs");
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { missing: { verb: string } }).missing.verb, "list");
  });

  test("no token, a forged one, an expired one and a token for another audience get 401", async () => {
    const u = await activeUser();
    const purger = await makeOperator(kc, "support-purger", ["list", "purge"]);
    const [header, claims] = purger.token.split(".");
    const sa = await kc.makeApiClient(k8s.CoreV1Api).readNamespacedServiceAccount({ name: "support-purger", namespace: OPERATORS_NAMESPACE });
    const now = Math.floor(Date.now() / 1000);
    const refused = {
      none: "",
      "not a token": "wrong",
      // the claims of a real token with another signature
      forged: `${header}.${claims}.${Buffer.from("x".repeat(256)).toString("base64url")}`,
      // signed with the API server's own key, expired an hour ago
      expired: signedServiceAccountToken({ name: "support-purger", uid: sa.metadata?.uid as string }, now - 3600),
      // the API server's own audience (what `kubectl create token` gives without --audience)
      "the API server's audience": (await makeOperator(kc, "support-purger", ["list", "purge"], { audience: h.stack.kube?.server })).token,
      "another audience": (await makeOperator(kc, "support-purger", ["list", "purge"], { audience: "vault" })).token,
    };
    for (const [what, token] of Object.entries(refused)) {
      const res = await (token ? purge(token, u.waId) : fetch(`${h.ingress.adminUrl}/admin/jobs`));
      assert.equal(res.status, 401, what);
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="unmix-admin"', what);
    }
    // the same token as the expired one, still valid: accepted (so it was refused for its expiry alone)
    assert.equal((await admin(signedServiceAccountToken({ name: "support-purger", uid: sa.metadata?.uid as string }, now + 3600), "/admin/jobs")).status, 200);
    assert.ok(await isActive(u.waId), "nothing was erased");
  });

  test("access taken away takes effect within the caches' lifetimes: an unbound operator gets 403, a deleted one 401", async () => {
    const leaving = await makeOperator(kc, "support-leaving", ["list"]);
    assert.equal((await admin(leaving.token, "/admin/jobs")).status, 200);
    // our answers are kept ADMIN_AUTH_CACHE_SECONDS (1 here); the API server keeps a token's for 10 s
    await kc.makeApiClient(k8s.RbacAuthorizationV1Api).deleteClusterRoleBinding({ name: "unmix-test-operator-support-leaving" });
    await until("the unbound operator to be refused", async () => ((await admin(leaving.token, "/admin/jobs")).status === 403 ? true : undefined), 15_000);
    await kc.makeApiClient(k8s.CoreV1Api).deleteNamespacedServiceAccount({ name: "support-leaving", namespace: OPERATORS_NAMESPACE });
    await until(
      "the deleted operator's token to be refused",
      async () => ((await admin(leaving.token, "/admin/jobs")).status === 401 ? true : undefined),
      30_000,
    );
  });
});

describe("the shared static token (ADMIN_AUTH=static-token)", () => {
  const STATIC = "test-static-admin-token-0123456789";
  after(async () => {
    await h.restart({ ADMIN_AUTH: "kubernetes", ADMIN_TOKEN: "" });
  });

  test("only when asked for: a token without ADMIN_AUTH=static-token, or static-token without a token, is a configuration error", () => {
    const base = { ...h.env, ADMIN_AUTH: undefined, ADMIN_TOKEN: undefined };
    assert.throws(
      () => parseIngressConfig({ ...base, ADMIN_TOKEN: STATIC }),
      (e) => e instanceof ConfigError && /ADMIN_TOKEN is invalid: is set but ADMIN_AUTH is kubernetes/.test(e.message),
    );
    assert.throws(
      () => parseIngressConfig({ ...base, ADMIN_AUTH: "static-token" }),
      (e) => e instanceof ConfigError && /ADMIN_TOKEN is not set/.test(e.message),
    );
    assert.equal(parseIngressConfig(base).ADMIN_AUTH, "kubernetes");
    assert.deepEqual(parseIngressConfig(base).ADMIN_TOKEN_AUDIENCES, [ADMIN_AUDIENCE]);
  });

  test("it may do everything, audited as the shared token; Kubernetes tokens are not taken then", async () => {
    await h.restart({ ADMIN_AUTH: "static-token", ADMIN_TOKEN: STATIC });
    const u = await activeUser();
    assert.equal((await admin(h.adminToken, "/admin/jobs")).status, 401);
    assert.equal((await purge(STATIC, u.waId)).status, 200);
    assert.deepEqual(
      (await adminEntries())
        .filter((e) => e.action === "purge")
        .slice(-1)
        .map((e) => e.operator),
      [SHARED_TOKEN_OPERATOR],
    );
  });
});
