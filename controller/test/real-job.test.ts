// One happy path with the real job-image (unmix-job from job-image/, its Python venv, a tiny
// HTDemucs with random weights in a local model repo, real ffmpeg): a real OGG/Opus voice note in,
// a real OGG/Opus voice note back, the manifest's real numbers in the status. Skipped when the
// job-image's venv has not been built (bash job-image/scripts/setup-test-env.sh).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { findCondition } from "@unmix/api/conditions";
import { finished, type Harness, type InProcessController, ROOT, repliesTo, startController, startHarness, storedFor, succeeded } from "./harness.ts";

const venv = process.env.UNMIX_JOB_VENV ?? join(ROOT, ".cache/job-image-venv");
const python = join(venv, "bin/python");
const skip = existsSync(python) ? false : `no job-image venv at ${venv}`;

let h: Harness;
let controller: InProcessController;
let ns: string;
let work: string;

describe("the real job-image", { skip }, () => {
  before(async () => {
    work = mkdtempSync(join(tmpdir(), "unmix-real-job-"));
    const env = { ...process.env, PYTHONPATH: join(ROOT, "job-image/src") };
    execFileSync(python, ["-m", "unmix_job.tiny_model", join(work, "models")], { env, stdio: "ignore" });
    h = await startHarness({
      gpus: 1,
      images: { "unmix/job": { entrypoint: [python, "-m", "unmix_job"], env: { PYTHONPATH: join(ROOT, "job-image/src") } } },
    });
    ns = await h.namespace();
    controller = await startController(
      h,
      h.env(ns, {
        JOB_IMAGE: "unmix/job:test",
        JOB_EXTRA_ENV: JSON.stringify({ MODEL_REPO: join(work, "models") }),
        JOB_ACTIVE_DEADLINE_SECONDS: "600",
        JOB_PENDING_DEADLINE_SECONDS: "300",
      }),
    );
  });
  after(async () => {
    await controller?.stop();
    await h?.stop();
  });

  test("a voice note with music comes back as a voice note, separated on the node", async () => {
    const note = join(work, "note.ogg");
    // a tone and a noise bed, four seconds, as WhatsApp records voice notes (mono Opus in OGG)
    execFileSync("ffmpeg", [
      "-v",
      "error",
      "-f",
      "lavfi",
      "-i",
      "sine=frequency=330:duration=4",
      "-f",
      "lavfi",
      "-i",
      "anoisesrc=d=4:a=0.05",
      "-filter_complex",
      "amix=inputs=2",
      "-ac",
      "1",
      "-c:a",
      "libopus",
      "-b:a",
      "32k",
      "-f",
      "ogg",
      note,
    ]);
    const sent = await h.userSends(ns, { content: readFileSync(note), mimeType: "audio/ogg; codecs=opus", voice: true });
    const sj = await finished(h, ns, sent.name, 300_000);
    assert.equal(succeeded(sj)?.status, "True", findCondition(sj.status?.conditions, "Separated")?.message);
    const reply = repliesTo(h.sim, sent.wamid);
    assert.equal(reply.length, 1);
    assert.equal(reply[0]?.type, "audio");
    assert.equal(reply[0]?.voice, true);
    const media = h.sim.media(reply[0]?.mediaId as string);
    assert.equal(media?.mimeType, "audio/ogg");
    assert.equal(media?.bytes.subarray(0, 4).toString("latin1"), "OggS");
    assert.ok(Math.abs((sj.status?.result?.mediaSeconds ?? 0) - 4) < 0.2, `media seconds ${sj.status?.result?.mediaSeconds}`);
    assert.equal(sj.status?.result?.device, "cpu");
    assert.equal(sj.status?.result?.model, "htdemucs");
    assert.ok((sj.status?.result?.realTimeFactor ?? 0) > 0);
    assert.deepEqual(await storedFor(h.store, sent.name), []);
  });
});
