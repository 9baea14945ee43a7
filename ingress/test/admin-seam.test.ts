// The admin listener's seam for routes (admin-auth.ts), in process: each route declares its verb
// (a route without one stops the start-up; "public" only on a GET of a fixed path), refusals come before the handler runs (401 without an
// operator, 403 naming the missing verb), a handler sees req.operator and may ask req.may(verb), and
// a review the API server cannot answer is a 503 with nothing done.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Operator, OperatorAccess } from "@unmix/core/operator-access";
import Fastify from "fastify";
import { adminAuth } from "../src/admin-auth.ts";

const ALICE: Operator = { username: "system:serviceaccount:ops:alice", groups: ["system:serviceaccounts"] };

/** An API server that knows one token (alice's) who may only list; `down` makes it refuse to answer. */
function fakeAccess(state = { down: false }) {
  const asked: string[] = [];
  const access = {
    async authenticate(token: string) {
      if (state.down) throw new Error("connect ECONNREFUSED");
      return token === "alice-token" ? ALICE : null;
    },
    async allowed(op: Operator, verb: string) {
      asked.push(`${op.username} ${verb}`);
      return verb === "list";
    },
  } as unknown as OperatorAccess;
  return { access, asked, state };
}

async function app(access: OperatorAccess) {
  const ran: string[] = [];
  const a = Fastify();
  await a.register(adminAuth, { mode: "kubernetes", access, namespace: "unmix" });
  a.get("/admin/jobs", { config: { permission: "list" } }, async (req) => {
    ran.push("jobs");
    return { operator: req.operator, mayPurge: await req.may("purge") };
  });
  a.post("/admin/purge", { config: { permission: "purge" } }, async () => {
    ran.push("purge");
    return {};
  });
  a.get("/admin/whoami", { config: { permission: null } }, async (req) => req.operator);
  await a.ready();
  return { a, ran };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe("the admin listener's seam", () => {
  test("a route that declares no permission stops the start-up; one a plugin's own onRoute hook declares is served", async () => {
    const a = Fastify();
    await a.register(adminAuth, { mode: "static-token", token: "x".repeat(16) });
    a.get("/admin/open", async () => "oops");
    await assert.rejects(async () => a.ready(), /admin routes declare no permission \(config.permission\): GET \/admin\/open, HEAD \/admin\/open/);

    const b = Fastify();
    await b.register(adminAuth, { mode: "static-token", token: "x".repeat(16) });
    await b.register(async (files) => {
      files.addHook("onRoute", (r) => {
        r.config = { ...r.config, permission: "list" };
      });
      files.get("/admin/console/app.js", async () => "console.log(1)"); // as a static-files plugin would, without config
    });
    await b.ready();
    assert.equal((await b.inject({ url: "/admin/console/app.js", headers: bearer("x".repeat(16)) })).body, "console.log(1)");
  });

  test("public is served without a token, and only a GET of a fixed path may declare it: anything else stops the start-up", async () => {
    const { access, asked } = fakeAccess();
    const a = Fastify();
    await a.register(adminAuth, { mode: "kubernetes", access, namespace: "unmix" });
    a.get("/console", { config: { permission: "public" } }, async (req) => ({ operator: req.operator }));
    await a.ready();
    const res = await a.inject({ url: "/console" });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { operator: null }, "no operator: nothing that needs one");
    assert.equal((await a.inject({ method: "HEAD", url: "/console" })).statusCode, 200);
    assert.deepEqual(asked, [], "no review asked for");

    for (const [method, url] of [
      ["POST", "/admin/purge"],
      ["GET", "/admin/users/:id"],
      ["GET", "/console/*"],
      ["DELETE", "/console"],
    ] as const) {
      const b = Fastify();
      await b.register(adminAuth, { mode: "static-token", token: "x".repeat(16) });
      b.route({ method, url, config: { permission: "public" }, handler: async () => "oops" });
      await assert.rejects(async () => b.ready(), /admin routes may be public only for GET of a fixed path/, `${method} ${url}`);
    }
  });

  test("the handler sees the operator and may ask about another verb", async () => {
    const { access } = fakeAccess();
    const { a } = await app(access);
    const res = await a.inject({ url: "/admin/jobs", headers: bearer("alice-token") });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { operator: ALICE, mayPurge: false });
    assert.deepEqual((await a.inject({ url: "/admin/whoami", headers: bearer("alice-token") })).json(), ALICE);
  });

  test("401 without a known token, 403 naming the missing verb: the handler never runs", async () => {
    const { access } = fakeAccess();
    const { a, ran } = await app(access);
    for (const headers of [{}, bearer("mallory-token"), { authorization: "Basic YWxpY2U6eA==" }]) {
      const res = await a.inject({ method: "POST", url: "/admin/purge", headers });
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers["www-authenticate"], 'Bearer realm="unmix-admin"');
    }
    const res = await a.inject({ method: "POST", url: "/admin/purge", headers: bearer("alice-token") });
    assert.equal(res.statusCode, 403);
    assert.deepEqual(res.json().missing, { group: "unmix.dev", resource: "support", verb: "purge" });
    assert.deepEqual(ran, []);
  });

  test("an API server that does not answer: 503, nothing done", async () => {
    const { access, state } = fakeAccess({ down: true });
    const { a, ran } = await app(access);
    const res = await a.inject({ method: "POST", url: "/admin/purge", headers: bearer("alice-token") });
    assert.equal(res.statusCode, 503);
    assert.match(res.json().message, /could not be checked: nothing was done/);
    state.down = false;
    assert.equal((await a.inject({ url: "/admin/jobs", headers: bearer("alice-token") })).statusCode, 200);
    assert.deepEqual(ran, ["jobs"]);
  });

  test("static-token: the one shared token may do everything, as shared-admin-token", async () => {
    const a = Fastify();
    await a.register(adminAuth, { mode: "static-token", token: "s".repeat(20) });
    a.post("/admin/purge", { config: { permission: "purge" } }, async (req) => req.operator);
    assert.equal((await a.inject({ method: "POST", url: "/admin/purge", headers: bearer("s".repeat(19)) })).statusCode, 401);
    const res = await a.inject({ method: "POST", url: "/admin/purge", headers: bearer("s".repeat(20)) });
    assert.deepEqual(res.json(), { username: "shared-admin-token", groups: [] });
  });
});
