// The controller's clock, injected everywhere it decides by time. Tests only: with
// UNMIX_TEST_CLOCK_OFFSET_FILE naming a file whose content is a number of seconds, the clock runs
// that far ahead (re-read at most once a second; a missing or empty file is 0), so a stack test can
// watch the running process's own garbage collector act a day later. Unset (production, and the
// chart never sets it), the clock is the system's. Object-store signatures and leases keep the real time.
import { readFileSync } from "node:fs";
import type { Logger } from "@unmix/core/log";

export const TEST_CLOCK_OFFSET_FILE = "UNMIX_TEST_CLOCK_OFFSET_FILE";

export function clockFromEnv(env: Record<string, string | undefined>, log: Logger): () => Date {
  const file = env[TEST_CLOCK_OFFSET_FILE];
  if (!file) return () => new Date();
  log.warn({ file }, `${TEST_CLOCK_OFFSET_FILE} is set: the clock is moved by the offset in that file (tests only)`);
  let offsetMs = 0;
  let readAt = 0;
  const offset = (): number => {
    const now = Date.now();
    if (now - readAt < 1000) return offsetMs;
    readAt = now;
    let text = "";
    try {
      text = readFileSync(file, "utf8").trim();
    } catch {
      // no file: no offset
    }
    const seconds = text === "" ? 0 : Number(text);
    if (!Number.isFinite(seconds)) log.error({ file, text }, "the test clock offset is not a number of seconds: ignored");
    else if (seconds * 1000 !== offsetMs) {
      offsetMs = seconds * 1000;
      log.warn({ offsetSeconds: seconds }, "test clock moved");
    }
    return offsetMs;
  };
  return () => new Date(Date.now() + offset());
}
