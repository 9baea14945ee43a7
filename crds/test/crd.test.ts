import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { CRD_FILE, renderCrd } from "../scripts/generate-crd.ts";
import { Sender, SeparationJobSpec, separationJobName } from "../src/separationjob.ts";

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

test("P2: the spec holds nothing that identifies a person: no sender, no message id (they are in the sender Secret)", () => {
  const spec = {
    message: { timestamp: "2026-11-25T10:00:00Z", phoneNumberId: "123" },
    media: { id: "1", mimeType: "audio/ogg", sha256: "x", kind: "audio", voice: true },
    output: { format: "ogg-opus" },
  };
  assert.equal(SeparationJobSpec.safeParse(spec).success, true);
  assert.equal(SeparationJobSpec.safeParse({ ...spec, sender: { waId: "4917623456789" } }).success, false);
  assert.equal(SeparationJobSpec.safeParse({ ...spec, message: { ...spec.message, id: "wamid.x" } }).success, false);
  const yaml = readFileSync(CRD_FILE, "utf8");
  for (const field of ["sender:", "waId", "profileName", "messageId"]) assert.ok(!yaml.includes(field), `the CRD has no ${field}`);
});

test("a sender without any id is rejected", () => {
  const sender = { messageId: "wamid.x", profileName: "Lena" };
  assert.equal(Sender.safeParse(sender).success, false);
  assert.equal(Sender.safeParse({ ...sender, userId: "DE.1" }).success, true);
  assert.equal(Sender.safeParse({ waId: "4917623456789" }).success, false, "the message id is needed to quote it");
});
