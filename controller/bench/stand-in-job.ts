// What the benchmarks' stand-in job (bench-job.sh) copies to its presigned URLs: an Ogg result of
// the given size and the manifest the real job would write for it. One place, so the two
// benchmarks cannot drift from the manifest the controller reads.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const OGG_HEADER = Buffer.from("OggS\u0000\u0002OpusHead\u0001\u0002");

/** A fresh folder with output.ogg (`sizeBytes` long) and manifest.json; its path is BENCH_DIR. */
export function standInJobOutput(o: { prefix: string; sizeBytes: number; fill: number; mediaSeconds: number; separateSeconds: number }): string {
  const dir = mkdtempSync(join(tmpdir(), o.prefix));
  const output = Buffer.concat([OGG_HEADER, Buffer.alloc(o.sizeBytes - OGG_HEADER.length, o.fill)]);
  writeFileSync(join(dir, "output.ogg"), output);
  writeFileSync(
    join(dir, "manifest.json"),
    JSON.stringify({
      schemaVersion: 1,
      model: "htdemucs",
      device: "cpu",
      mediaSeconds: o.mediaSeconds,
      mimeType: "audio/ogg",
      sizeBytes: output.length,
      separateSeconds: o.separateSeconds,
      realTimeFactor: o.separateSeconds / o.mediaSeconds,
    }),
  );
  return dir;
}
