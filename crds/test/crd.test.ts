import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { CRD_FILE, renderCrd } from "../scripts/generate-crd.ts";
import { SeparationJobSpec, separationJobName } from "../src/separationjob.ts";

test("the committed CRD YAML is what the schema generates", () => {
  assert.equal(readFileSync(CRD_FILE, "utf8"), renderCrd(), "crds/separationjobs.unmix.dev.yaml drifted: run `npm run generate -w crds`");
});

test("SeparationJob names are deterministic DNS-1123 names per wamid", () => {
  const a = separationJobName("wamid.HBgNNDkxNzYyMzQ1Njc4ORUCABIYFDNFQjA5QTczQkIxRjQ1RDI4QzE3AA==");
  assert.equal(a, separationJobName("wamid.HBgNNDkxNzYyMzQ1Njc4ORUCABIYFDNFQjA5QTczQkIxRjQ1RDI4QzE3AA=="));
  assert.notEqual(a, separationJobName("wamid.other"));
  assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.ok(a.length <= 63);
});

test("a spec without any sender id is rejected", () => {
  const spec = {
    message: { id: "wamid.x", timestamp: "2026-11-25T10:00:00Z", phoneNumberId: "123" },
    sender: { profileName: "Lena" },
    media: { id: "1", mimeType: "audio/ogg", sha256: "x", kind: "audio", voice: true },
    output: { format: "ogg-opus" },
  };
  assert.equal(SeparationJobSpec.safeParse(spec).success, false);
  assert.equal(SeparationJobSpec.safeParse({ ...spec, sender: { userId: "DE.1" } }).success, true);
});
