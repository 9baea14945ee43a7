// The chat page in headless Chromium (Debian's chromium, driven by playwright-core), on the whole
// product: a user picks a voice note, sends it, and sees the cleaned voice note appear in the
// thread, quoted on theirs. The screenshot is kept in .cache/test-artifacts/.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type BrowserContext, chromium } from "playwright-core";
import { cacheDir, type Product, startProduct } from "../src/product.ts";
import { makeMedia, probe } from "../src/test-media.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const artifacts = join(cacheDir(), "test-artifacts");

let p: Product;
let browser: BrowserContext;
let profile: string;
let files: string;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), "unmix-chromium-"));
  files = mkdtempSync(join(tmpdir(), "unmix-upload-"));
  // started one after the other, so a failure of either leaves nothing running for after() to miss
  p = await startProduct({ gpus: 1 });
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 480, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await p?.stop();
  for (const d of [profile, files]) if (d) rmSync(d, { recursive: true, force: true });
});

test("a voice note sent from the chat page comes back cleaned, quoted on it", async () => {
  const note = makeMedia("voice", 4, 11);
  const file = join(files, "voice-note.ogg");
  writeFileSync(file, note.bytes);
  const page = await browser.newPage();
  try {
    await page.goto(`${p.sim.baseUrl}/`);
    await page.getByTestId("file-input").setInputFiles(file);
    await page.getByTestId("as-voice").check();
    await page.getByTestId("send-file").click();

    const mine = page.locator('[data-testid="user-message"][data-type="audio"]');
    await mine.first().waitFor({ timeout: 30_000 });
    const myId = await mine.first().getAttribute("data-id");
    assert.ok(myId);

    const replyEl = page.locator(`[data-testid="bot-message"][data-type="audio"]:has([data-testid="quote"][data-quoted-id="${myId}"])`);
    await replyEl.waitFor({ timeout: 120_000 });
    assert.equal((await replyEl.getByTestId("quote").textContent())?.trim(), "🎤 Voice message");
    const audio = replyEl.getByTestId("reply-audio");
    assert.equal(await audio.count(), 1, "the reply is playable inline");
    // what the page plays is the cleaned voice note the bot sent
    const src = await audio.getAttribute("src");
    assert.ok(src);
    const played = Buffer.from(await (await page.request.get(new URL(src, p.sim.baseUrl).href)).body());
    assert.deepEqual(
      probe(played).streams.map((s) => s.codec_name),
      ["opus"],
    );
    const sent = p.sim.sentMessages().find((m) => m.replyTo === myId && m.type === "audio");
    assert.equal(sent?.voice, true);
    assert.deepEqual(played, p.sim.media(sent?.mediaId as string)?.bytes);

    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, "chat-voice-note.png"), fullPage: true });
  } finally {
    await page.close();
  }
});
