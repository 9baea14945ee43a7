// The support console in headless Chromium (Debian's chromium, driven by playwright-core), on the
// whole product: messages sent through the simulator listed with the profile name and masked
// number, new ones and their progress arriving live, a purge done with the keyboard alone, the
// broadcast screen; an operator whose role only lists sees the messages and is told why a purge is
// refused; and nothing personal in the ingress's logs while it is used. Operators sign in with their
// own Kubernetes token (a ServiceAccount's, for the audience unmix-admin), as in ingress/test/admin-auth.test.ts. The node starts
// with no GPU, so the messages wait in the pipeline (and keep their sender Secrets) until a test
// gives it one. Screenshots are kept in .cache/test-artifacts/.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { separationJobName, TRACEPARENT_ANNOTATION } from "@unmix/api/separationjob";
import { SUPPORT_VERBS } from "@unmix/api/support";
import { maskNumber, userKey } from "@unmix/core/privacy";
import { replies } from "@unmix/core/replies";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { makeOperator } from "../src/operators.ts";
import { findLeaks, personalForms } from "../src/personal-data.ts";
import { cacheDir, lastSeenAt, OPERATOR, type Product, startProduct, USER_KEY_SECRET, until } from "../src/product.ts";
import { makeMedia } from "../src/test-media.ts";
import type { Sender } from "../src/whatsapp-sim/index.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const artifacts = join(cacheDir(), "test-artifacts");

const TRACING_UI = "http://tracing.example/trace/{traceId}";
const LOTTE: Sender = { waId: "4915112345678", name: "Lotte Konsolenfrau" };
const OMER: Sender = { waId: "4915187654321", name: "Ömer Supportfall" };
/** Last seen two days ago (written into the activity bucket by the broadcast test): she gets the template. */
const RUTH: Sender = { waId: "4915199887766", name: "Ruth Vorlage" };

let p: Product;
let browser: BrowserContext;
let profile: string;
let page: Page;
/** Tokens of two operators: one whose role grants every verb, one that may only list and get. */
let support: string;
let reader: { username: string; token: string };
/** Ömer's first message, listed for the read-only operator too. */
let omerSj: string;
/** What the page logged or threw: a CSP violation shows here. */
const pageProblems: string[] = [];

before(async () => {
  profile = mkdtempSync(join(tmpdir(), "unmix-chromium-"));
  p = await startProduct({ gpus: 0, ingressEnv: { TRACING_UI_URL: TRACING_UI } });
  const kc = p.stack.kube?.kc as NonNullable<Product["stack"]["kube"]>["kc"];
  support = (await makeOperator(kc, OPERATOR, [...SUPPORT_VERBS])).token;
  reader = await makeOperator(kc, "console-reader", ["list", "get"]);
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage();
  page.on("console", (m) => pageProblems.push(`console ${m.type()}: ${m.text()} (${m.location().url})`));
  page.on("pageerror", (err) => pageProblems.push(`error: ${err.message}`));
  mkdirSync(artifacts, { recursive: true });
});

after(async () => {
  await browser?.close().catch(() => {});
  await p?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function sendVoiceNote(from: Sender, seed: number) {
  const m = makeMedia("voice", 3, seed);
  return p.sim.sendUserMessage({ type: "audio", voice: true, bytes: m.bytes, mimeType: m.mimeType, from });
}

const row = (sjName: string) => page.locator(`#jobs tbody tr[data-name="${sjName}"]`);
const cells = async (sjName: string) => (await row(sjName).locator("td").allTextContents()).map((t) => t.trim());

test("P2: the console lists a message with its profile name and masked number, shows new ones and their progress live (no reload), with filters", async () => {
  const first = await sendVoiceNote(LOTTE, 31);
  const firstSj = separationJobName(first.id);
  await until("the first message's SeparationJob", async () => (await p.sjs.get(firstSj)) ?? undefined, 60_000);

  await page.goto(`${p.adminUrl}/console`);
  // a wrong token is refused and asked for again
  assert.match((await page.locator("#token-help").textContent()) ?? "", /kubectl create token .+ --audience unmix-admin/, "the page says which token");
  await page.getByLabel("Operator token").fill("not-the-admin-token-at-all");
  await page.getByLabel("Operator token").press("Enter");
  await page.getByRole("alert").filter({ hasText: "refused" }).waitFor({ timeout: 30_000 });
  await page.getByLabel("Operator token").fill(support);
  await page.getByLabel("Operator token").press("Enter");

  await row(firstSj).waitFor({ timeout: 30_000 });
  const listed = await cells(firstSj);
  assert.equal(listed[1], LOTTE.name, "the profile name");
  assert.equal(listed[2], maskNumber(LOTTE.waId as string), "the masked number");
  assert.equal(listed[2], "+49 ••• ••• 78");
  assert.deepEqual(listed.slice(3, 5), ["audio", "ogg-opus"]);
  await until("the step it waits in", async () => ((await cells(firstSj))[5]?.includes("waiting for a GPU") ? true : undefined), 60_000);
  assert.ok(!(await page.content()).includes(LOTTE.waId as string), "the number itself is nowhere on the page");

  // a new message arrives while the page is open: it appears without a reload
  // (the page's own scripts are evaluated as strings: this project's TypeScript has no DOM types)
  await page.evaluate("window.notReloaded = true");
  const second = await sendVoiceNote(OMER, 32);
  const secondSj = separationJobName(second.id);
  omerSj = secondSj;
  await until("the second message, live", async () => ((await cells(secondSj).catch(() => []))[1] === OMER.name ? true : undefined), 60_000);
  assert.equal((await cells(secondSj))[2], maskNumber(OMER.waId as string));
  assert.match((await page.locator("#announce").textContent()) ?? "", /New message/, "announced to screen readers (aria-live)");
  assert.equal(await page.locator("#live").getAttribute("aria-live"), "polite");
  await page.screenshot({ path: join(artifacts, "console-messages-waiting.png"), fullPage: true });

  // filters: by status (none has failed) and back
  await page.getByLabel("Status").selectOption("failed");
  assert.equal(await row(firstSj).count(), 0);
  assert.equal(await page.locator("#jobs-empty").isVisible(), true);
  await page.getByLabel("Status").selectOption("running");
  assert.equal(await row(firstSj).count(), 1);
  await page.getByLabel("Status").selectOption("");

  // a GPU comes: both finish, and the page follows their steps to the end
  await p.stack.kube?.node.setGpus(2);
  for (const sj of [firstSj, secondSj]) await row(sj).and(page.locator('[data-state="succeeded"]')).waitFor({ timeout: 300_000 });
  const done = await cells(firstSj);
  assert.equal(done[5], "succeeded");
  for (const step of ["fetched", "separated", "replied", "done"]) assert.match(done[6] ?? "", new RegExp(`${step} [\\d.]+`), `timing: ${step}`);
  // the trace id, the message's own (its traceparent), linked to the tracing UI
  const traceId = (await p.sjs.get(firstSj))?.metadata.annotations?.[TRACEPARENT_ANNOTATION]?.split("-")[1];
  assert.match(traceId ?? "", /^[0-9a-f]{32}$/);
  assert.equal(done[8], traceId);
  assert.equal(await row(firstSj).getByRole("link", { name: traceId }).getAttribute("href"), TRACING_UI.replace("{traceId}", traceId as string));
  assert.equal(done[1], LOTTE.name, "still shown: the page keeps what it saw after the sender Secret went");
  assert.equal(await page.evaluate("window.notReloaded"), true, "no reload");
  await page.screenshot({ path: join(artifacts, "console-messages-done.png"), fullPage: true });
  // the refused token's 401s are the only complaints: nothing blocked by the CSP, no script error
  assert.deepEqual(
    pageProblems.filter((m) => !/status of 401/.test(m)),
    [],
  );
});

const focused = () => page.evaluate("document.activeElement?.id") as Promise<string | undefined>;

/** Tabs until `id` has the focus; fails after `max` presses. */
async function tabTo(id: string, max = 25) {
  for (let i = 0; i < max; i++) {
    if ((await focused()) === id) return;
    await page.keyboard.press("Tab");
  }
  assert.fail(`#${id} never got the focus by Tab`);
}

const countOf = async (list: string, key: string) => (await page.locator(`#${list} dd[data-count="${key}"]`).textContent())?.trim();

test("P14: a purge from the console, by keyboard alone: counts first, Escape changes nothing, Enter deletes; the user stays opted out", async () => {
  const key = userKey(LOTTE.waId as string, USER_KEY_SECRET);
  const ownerMarkers = async () => {
    const keys = [];
    for await (const o of p.store.list(`owners/${key}/`)) keys.push(o.key);
    return keys;
  };
  assert.equal((await ownerMarkers()).length, 1, "Lotte received one result, cached");
  const theirJobs = async () => (await p.sjs.listOfUser(key)).items.filter((j) => !j.metadata.deletionTimestamp).length;
  assert.equal(await theirJobs(), 1);

  // from the top of the page: the nav's Purge button, then the lookup field
  await page.evaluate("document.activeElement?.blur()");
  await tabTo("nav-purge");
  await page.keyboard.press("Enter");
  await tabTo("lookup-id");
  await page.keyboard.type(`+${LOTTE.waId}`);
  await page.keyboard.press("Enter");
  await page.locator("#held").waitFor({ state: "visible", timeout: 30_000 });
  assert.deepEqual([await countOf("held-counts", "jobs"), await countOf("held-counts", "results"), await countOf("held-counts", "optedOut")], ["1", "1", "no"]);
  assert.ok(Number(await countOf("held-counts", "keyValueEntries")) >= 1, "their activity entry");

  await tabTo("purge-start");
  assert.notEqual(await page.evaluate("getComputedStyle(document.activeElement).outlineStyle"), "none", "the focus is visible");
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog");
  await dialog.waitFor({ state: "visible" });
  assert.equal(await focused(), "confirm-purge", "the focus moves into the confirmation");
  assert.match((await dialog.textContent()) ?? "", /1 SeparationJob\(s\), 1 cached result\(s\)/);
  await page.screenshot({ path: join(artifacts, "console-purge-confirm.png"), fullPage: true });
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  assert.equal(await focused(), "purge-start", "Escape returns the focus");
  assert.equal(await theirJobs(), 1, "Escape deleted nothing");
  assert.equal((await ownerMarkers()).length, 1);

  await page.keyboard.press("Enter");
  await dialog.waitFor({ state: "visible" });
  await page.keyboard.press("Enter");
  await page.locator("#purge-result").waitFor({ state: "visible", timeout: 60_000 });
  assert.deepEqual(
    [await countOf("purge-counts", "jobs"), await countOf("purge-counts", "results"), await countOf("purge-counts", "optedOut")],
    ["1", "1", "yes"],
  );
  await page.screenshot({ path: join(artifacts, "console-purge-done.png"), fullPage: true });
  assert.equal(await theirJobs(), 0, "their SeparationJob is gone");
  assert.deepEqual(await ownerMarkers(), [], "their cached result is gone");

  // opted out: a new voice note is not processed and nothing is stored again
  const again = await sendVoiceNote(LOTTE, 33);
  const answer = await p.sim.waitForMessage((m) => m.replyTo === again.id && m.type === "text", 60_000);
  assert.equal(answer.text, replies.optedOut);
  assert.equal(await p.sjs.get(separationJobName(again.id)), undefined, "no SeparationJob for it");
  assert.equal(await theirJobs(), 0);

  // and the lookup now says so
  await tabTo("lookup-id");
  await page.keyboard.press("Enter");
  await page.locator("#held").waitFor({ state: "visible", timeout: 30_000 });
  assert.deepEqual([await countOf("held-counts", "jobs"), await countOf("held-counts", "optedOut")], ["0", "yes"]);
});

test("an operator whose role only lists sees the messages; the purge is refused with a message naming the missing verb, and nothing is erased", async () => {
  const omerKey = userKey(OMER.waId as string, USER_KEY_SECRET);
  const omersJobs = async () => (await p.sjs.listOfUser(omerKey)).items.length;
  const jobsBefore = await omersJobs();
  assert.ok(jobsBefore >= 1);
  await page.getByRole("button", { name: "Forget token" }).click();
  await page.getByLabel("Operator token").fill(reader.token);
  await page.getByLabel("Operator token").press("Enter");
  await row(omerSj).waitFor({ timeout: 30_000 });
  assert.equal((await cells(omerSj))[2], maskNumber(OMER.waId as string), "the list, as for any operator");

  await page.locator("#nav-purge").click();
  await page.getByLabel("Phone number or user id").fill(`+${OMER.waId}`);
  await page.getByLabel("Phone number or user id").press("Enter");
  const refused = page.locator("#purge-error");
  await refused.filter({ hasText: "Not allowed" }).waitFor({ timeout: 30_000 });
  assert.equal(
    (await refused.textContent())?.trim(),
    `Not allowed: your role does not grant this (the support-operator ClusterRole does). ${reader.username} may not purge unmix.dev/support.`,
  );
  assert.equal(await page.locator("#held").isVisible(), false, "no counts shown: looking a number up needs purge too");
  assert.equal(await page.locator("#sign-in").isVisible(), false, "still signed in: the token is good, the role is short");
  await page.screenshot({ path: join(artifacts, "console-purge-refused.png"), fullPage: true });
  assert.equal(await omersJobs(), jobsBefore, "nothing erased");

  // back as the operator who may do everything, for the broadcast
  await page.getByRole("button", { name: "Forget token" }).click();
  await page.getByLabel("Operator token").fill(support);
  await page.getByLabel("Operator token").press("Enter");
  await row(omerSj).waitFor({ timeout: 30_000 });
});

test("P15: the broadcast screen: the approved templates to pick from, a dry run with the counts by kind that sends nothing, the start with its progress to the end", async () => {
  p.sim.setTemplate("policy_update", "en", "APPROVED");
  p.sim.setTemplate("policy_update_draft", "en", "PENDING");
  // a user last seen two days ago: outside the 24-hour window, so only the template may reach them
  await lastSeenAt(p, [RUTH.waId as string], Date.now() - 2 * 24 * 3600_000);
  await page.getByRole("button", { name: "Broadcast" }).click();
  await until("the approved templates", async () => ((await page.locator("#bc-templates option").count()) > 0 ? true : undefined), 30_000);
  const options = await page.locator("#bc-templates option").all();
  assert.deepEqual(await Promise.all(options.map((o) => o.getAttribute("value"))), ["policy_update"], "only approved ones");
  await page.getByLabel("Text (sent to users inside their 24-hour window)").fill("Our data policy changed: see the link.");
  assert.equal(await page.getByRole("button", { name: "Start broadcast" }).isDisabled(), true, "no start before a dry run");
  const before = p.sim.sentMessages().length;

  // text only: Ruth is outside the window, so this one would not start
  await page.getByRole("button", { name: "Dry run" }).click();
  await page.locator("#bc-plan").waitFor({ state: "visible", timeout: 30_000 });
  assert.deepEqual([await countOf("bc-plan-counts", "text"), await countOf("bc-plan-counts", "outsideWindow")], ["1", "1"]);
  assert.match((await page.locator("#bc-plan-refusal").textContent()) ?? "", /It would not start: .*outside/);
  assert.equal(await page.getByRole("button", { name: "Start broadcast" }).isDisabled(), true, "a start that would be refused is not offered");

  await page.getByLabel("Approved template (sent outside the window)").fill("policy_update");
  await page.getByRole("button", { name: "Dry run" }).click();
  await until("the new plan", async () => ((await countOf("bc-plan-counts", "template")) === "1" ? true : undefined), 30_000);
  // Ömer wrote within the window; Ruth did not; Lotte is opted out and no longer active
  assert.deepEqual(
    [
      await countOf("bc-plan-counts", "total"),
      await countOf("bc-plan-counts", "text"),
      await countOf("bc-plan-counts", "template"),
      await countOf("bc-plan-counts", "outsideWindow"),
    ],
    ["2", "1", "1", "0"],
  );
  assert.equal(await page.locator("#bc-plan-refusal").textContent(), "");
  assert.equal(p.sim.sentMessages().length, before, "a dry run sends nothing");

  /** The answer to the next start (a POST without dryRun). */
  const nextStart = () =>
    page.waitForResponse((r) => r.url().endsWith("/admin/broadcasts") && r.request().method() === "POST" && !r.request().postData()?.includes("dryRun"));
  const started = nextStart();
  await page.getByRole("button", { name: "Start broadcast" }).click();
  const first = await started;
  assert.equal(first.status(), 202, "a new campaign");
  const { id } = (await first.json()) as { id: string };
  await page.locator("#bc-progress").waitFor({ state: "visible", timeout: 60_000 });
  await until("the broadcast's end", async () => ((await countOf("bc-progress-counts", "state")) === "Finished" ? true : undefined), 120_000);
  assert.deepEqual(
    [
      await countOf("bc-progress-counts", "total"),
      await countOf("bc-progress-counts", "sent"),
      await countOf("bc-progress-counts", "text"),
      await countOf("bc-progress-counts", "template"),
      await countOf("bc-progress-counts", "failed"),
    ],
    ["2", "2", "1", "1", "0"],
  );
  assert.match((await page.locator("#announce").textContent()) ?? "", /Broadcast finished: 2 sent/);
  const sent = p.sim
    .sentMessages()
    .slice(before)
    .filter((m) => m.type !== "reaction");
  assert.deepEqual(
    sent.map((m) => [m.to, m.type, m.type === "text" ? m.text : m.template?.name]).sort(),
    [
      [OMER.waId, "text", "Our data policy changed: see the link."],
      [RUTH.waId, "template", "policy_update"],
    ].sort(),
  );
  // the same composed notice started again is the same campaign: nothing more is sent
  await page.getByRole("button", { name: "Dry run" }).click();
  await page.getByRole("button", { name: "Start broadcast" }).and(page.locator(":enabled")).waitFor({ timeout: 30_000 });
  const again = nextStart();
  await page.getByRole("button", { name: "Start broadcast" }).click();
  const second = await again;
  assert.deepEqual([second.status(), ((await second.json()) as { id: string }).id], [200, id], "the same idempotency key: the same campaign, nothing started");
  await until("the same campaign, finished", async () => ((await countOf("bc-progress-counts", "state")) === "Finished" ? true : undefined), 30_000);
  assert.equal(
    p.sim
      .sentMessages()
      .slice(before)
      .filter((m) => m.type !== "reaction").length,
    2,
    "one notice each",
  );
  await page.screenshot({ path: join(artifacts, "console-broadcast.png"), fullPage: true });
});

test("P2: while the console was used, no ingress log line holds either user's number (in clear or base64), a wamid or their profile name", () => {
  const files = readdirSync(p.stack.dir).filter((f) => /^ingress-\d+\.log$/.test(f));
  assert.ok(files.length >= 1, `the ingress's logs: ${files.join(", ")}`);
  const lines = files.flatMap((f) =>
    readFileSync(join(p.stack.dir, f), "utf8")
      .split("\n")
      .map((text, i) => ({ where: `${f}:${i + 1}`, text })),
  );
  // the console's requests were logged (the refused token, the purge, the broadcast): the lines searched are theirs too
  for (const what of ["admin request refused", "admin purge", "policy broadcast"])
    assert.ok(
      lines.some((l) => l.text.includes(what)),
      `a log line "${what}" among ${lines.length}`,
    );
  assert.deepEqual(
    findLeaks(lines, [
      ...personalForms({ waId: LOTTE.waId, name: LOTTE.name }),
      ...personalForms({ waId: OMER.waId, name: OMER.name }),
      ...personalForms({ waId: RUTH.waId, name: RUTH.name }),
    ]),
    [],
  );
});
