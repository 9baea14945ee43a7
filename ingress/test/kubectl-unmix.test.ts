// `kubectl unmix` on the real local stack: installed as make does it, found by kubectl on PATH, run
// with the stack's kubeconfig against the admin listener (--admin-url: the local node agent serves
// no port-forward). It mints a token for the operator ServiceAccount it is told to act as, lists
// jobs (the profile name only with -o wide), purges only with the right role and a confirmation,
// and says plainly what went wrong.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { separationJobName } from "@unmix/api/separationjob";
import { userKey } from "@unmix/core/privacy";
import { makeOperator, OPERATORS_NAMESPACE } from "@unmix/e2e/operators";
import { BIN_DIR, REPO_ROOT } from "@unmix/e2e/stack/versions";
import { messageRef } from "../src/envelope.ts";
import { BUCKETS } from "../src/nats.ts";
import { type Harness, ogg, startHarness, USER_KEY_SECRET, until } from "./harness.ts";

let h: Harness;
let cache: string;
before(async () => {
  h = await startHarness();
  await makeOperator(h.stack.kube?.kc as NonNullable<Harness["stack"]["kube"]>["kc"], "support-reader", ["list", "get"]);
  await makeOperator(h.stack.kube?.kc as NonNullable<Harness["stack"]["kube"]>["kc"], "support-purger", ["list", "get", "purge"]);
  // the install as `make setup-kubectl-unmix` does it, into a cache of our own whose Node is this one
  cache = mkdtempSync(join(tmpdir(), "unmix-kubectl-unmix-"));
  mkdirSync(join(cache, "node", "bin"), { recursive: true });
  symlinkSync(process.execPath, join(cache, "node", "bin", "node"));
  const make = await run("make", ["-s", "-C", REPO_ROOT, "setup-kubectl-unmix", `CACHE=${cache}`]);
  assert.equal(make.code, 0, make.stderr);
});
after(async () => {
  await h?.stop();
});

function run(command: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** `kubectl unmix …` as an operator would type it, with the stack's kubeconfig (its user: the cluster admin). */
const kubectlUnmix = (...args: string[]) =>
  run(join(BIN_DIR, "kubectl"), ["unmix", "--admin-url", h.ingress.adminUrl as string, ...args], {
    PATH: `${join(cache, "bin")}:${BIN_DIR}:${process.env.PATH}`,
    KUBECONFIG: h.stack.kube?.kubeconfigPath as string,
  });
const as = (sa: string) => ["--service-account", `${OPERATORS_NAMESPACE}/${sa}`];

describe("kubectl unmix", () => {
  test("jobs: the recent jobs, the profile name only with -o wide", async () => {
    const u = { waId: "4915114000199", name: "Plugin Tester" };
    const sent = await h.sim.sendUserMessage({ type: "audio", bytes: ogg(120), from: u });
    const processed = await h.nats.kv(BUCKETS.processed);
    await until("the job", async () => ((await processed.get(messageRef(sent.id)))?.string() === "job_created" ? true : undefined));
    const plain = await kubectlUnmix(...as("support-reader"), "jobs");
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^NAME\s+CREATED\s+KIND\s+FORMAT\s+STATUS/);
    const line = plain.stdout.split("\n").find((l) => l.startsWith(separationJobName(sent.id)));
    assert.ok(line, plain.stdout);
    assert.match(line, /\baudio\b/);
    assert.ok(!plain.stdout.includes(u.name) && !plain.stdout.includes(u.waId), "no profile name or number by default");
    const wide = await kubectlUnmix(...as("support-reader"), "jobs", "-o", "wide");
    assert.match(wide.stdout.split("\n").find((l) => l.startsWith(separationJobName(sent.id))) ?? "", /Plugin Tester$/);
    const json = JSON.parse((await kubectlUnmix(...as("support-reader"), "jobs", "-o", "json")).stdout) as { jobs: { name: string }[] };
    assert.ok(json.jobs.some((j) => j.name === separationJobName(sent.id)));
  });

  test("purge: refused without the purge role or a confirmation, done with both", async () => {
    const u = { waId: "4915114000299", name: "Purge Me" };
    const sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    const processed = await h.nats.kv(BUCKETS.processed);
    await until("the help", async () => ((await processed.get(messageRef(sent.id)))?.operation === "PUT" ? true : undefined));
    const active = async () => (await (await h.nats.kv(BUCKETS.active)).get(userKey(u.waId, USER_KEY_SECRET)))?.operation === "PUT";

    const reader = await kubectlUnmix(...as("support-reader"), "purge", "--number", `+${u.waId}`, "--yes");
    assert.equal(reader.code, 1);
    assert.match(reader.stderr, /forbidden: system:serviceaccount:unmix-operators:support-reader may not purge unmix.dev\/support/);
    const unconfirmed = await kubectlUnmix(...as("support-purger"), "purge", "--number", `+${u.waId}`);
    assert.equal(unconfirmed.code, 2);
    assert.match(unconfirmed.stderr, /confirm with --yes/);
    assert.ok(await active(), "nothing erased yet");

    const done = await kubectlUnmix(...as("support-purger"), "purge", "--number", `+${u.waId}`, "--yes");
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /^purged: .*keyValueEntries=[1-9]/);
    assert.equal(await active(), false);
  });

  test("tokens: the kubeconfig's own (the API server's audience) is refused with a hint; a given one works", async () => {
    const own = await kubectlUnmix("jobs");
    assert.equal(own.code, 1);
    assert.match(own.stderr, /not authenticated: .*--service-account NS\/NAME, audience unmix-admin/);
    const { token } = await makeOperator(h.stack.kube?.kc as NonNullable<Harness["stack"]["kube"]>["kc"], "support-reader", ["list", "get"]);
    assert.equal((await kubectlUnmix("--token", token, "jobs")).code, 0);
  });

  test("broadcast status: the campaigns with their progress, as a table or JSON, for an operator who may list", async () => {
    assert.equal((await kubectlUnmix(...as("support-reader"), "broadcast", "status")).stdout, "no broadcast campaigns\n");
    h.sim.setTemplate("policy_update", "en", "APPROVED");
    const res = await fetch(`${h.ingress.adminUrl}/admin/broadcasts`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ template: { name: "policy_update", languageCode: "en" }, idempotencyKey: "kubectl-unmix-status" }),
    });
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    const finished = await until(
      "the campaign's end",
      async () => {
        const r = await kubectlUnmix(...as("support-reader"), "broadcast", "status", "-o", "json");
        const c = (JSON.parse(r.stdout) as { campaigns: { id: string; state: string }[] }).campaigns.find((x) => x.id === id);
        return c?.state === "Finished" ? c : undefined;
      },
      60_000,
    );
    assert.equal(finished.id, id);
    const r = await kubectlUnmix(...as("support-reader"), "broadcast", "status");
    assert.equal(r.code, 0, r.stderr);
    const [head, line] = r.stdout.trim().split("\n");
    assert.match(head ?? "", /^ID +STATE +TOTAL +SENT +TEXT +TEMPLATE +SKIPPED +FAILED +UNCONFIRMED +STARTED +FINISHED$/);
    assert.match(line ?? "", new RegExp(`^${id} +Finished +\\d+ +\\d+ +0 +\\d+ +\\d+ +0 +0 +\\S+ +\\S+$`), "a template-only campaign sends no text");
    const usage = await kubectlUnmix("broadcast", "start");
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /the one subcommand is `status`/);
  });
});
