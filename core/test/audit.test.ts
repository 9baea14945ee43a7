// The audit trail's schema and message ids (core/src/audit.ts), and the inbound signature
// (ingress/src/signing.ts): pure, in process.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { separationJobName } from "@unmix/api/separationjob";
import { SIGNATURE_HEADER, signInbound, verifyInbound } from "../../ingress/src/signing.ts";
import { AUDIT_EVENTS, type AuditFields, auditable, auditLog, messageRef, refOfSeparationJob } from "../src/audit.ts";

const WAMID = "wamid.HBgLNDkxNzYxMjM0NTY3OBUCABIYFjNFQjBDMEE4QTk5RjFBQjc2Q0E2RTQA";

function recorder() {
  const published: { subject: string; data: string; msgId?: string }[] = [];
  const log = auditLog(
    async (subject, data, o) => {
      published.push({ subject, data, ...(o.msgId ? { msgId: o.msgId } : {}) });
      return { duplicate: false };
    },
    () => new Date("2026-01-02T03:04:05Z"),
  );
  return { log, published };
}

describe("P5: audit entries", () => {
  test("P5: an entry references its message by the ref of logs and SeparationJob names, with a message id per message and event", async () => {
    assert.equal(separationJobName(WAMID), `sj-${messageRef(WAMID)}`, "the SeparationJob's name carries the same hash");
    assert.equal(refOfSeparationJob(separationJobName(WAMID)), messageRef(WAMID));
    const { log, published } = recorder();
    await log.write({ event: "job-created", ref: messageRef(WAMID) });
    assert.deepEqual(published, [
      {
        subject: "unmix.audit.job-created",
        data: JSON.stringify({ event: "job-created", at: "2026-01-02T03:04:05.000Z", ref: messageRef(WAMID) }),
        msgId: `job-created.${messageRef(WAMID)}`,
      },
    ]);
  });

  test("P5: no number, name, wamid or free text gets into an entry", async () => {
    const { log, published } = recorder();
    const refused: AuditFields[] = [
      { event: "received", ref: WAMID }, // a wamid as the ref
      { event: "received", ref: messageRef(WAMID), outcome: "4917612345678" }, // a number
      { event: "received", ref: messageRef(WAMID), type: "a4917612345678" }, // a number inside a word
      { event: "admin", action: "purge", operator: "Max Mustermann" }, // a name
      { event: "webhook-error", code: 131000, reason: "Message undeliverable to +49 176 1234567" }, // free text
      { event: "received", ref: messageRef(WAMID), profileName: "Max" } as AuditFields, // an unknown field
      { event: "admin", counts: { "4917612345678": 1 } },
    ];
    for (const fields of refused) await assert.rejects(log.write(fields), Error, JSON.stringify(fields));
    assert.deepEqual(published, [], "nothing written");
  });

  test("P5: an admin entry names the operator as Kubernetes does, and never a number in its place", async () => {
    const { log, published } = recorder();
    for (const operator of ["system:serviceaccount:sre:alice", "alice@example.com", "shared-admin-token"])
      await log.write({ event: "admin", action: "purge", operator, outcome: "started" }, operator);
    assert.deepEqual(
      published.map((p) => JSON.parse(p.data).operator),
      ["system:serviceaccount:sre:alice", "alice@example.com", "shared-admin-token"],
    );
    for (const operator of ["+4917612345678", "system:serviceaccount:sre:4917612345678", "alice\nbob", ""])
      await assert.rejects(log.write({ event: "admin", action: "purge", operator }, "x"), Error, operator);
    assert.equal(published.length, 3);
  });

  test("P5: Meta's odd timestamps and long error lists never make an entry the schema refuses", async () => {
    const { log, published } = recorder();
    for (const [timestamp, codes] of [
      ["0", []],
      ["4917612345678", [1]],
      ["1795600000", Array.from({ length: 50 }, (_, i) => 131000 + i)],
    ] as const)
      await log.write({ event: "status", ref: messageRef(WAMID), status: "failed", ...auditable(timestamp, [...codes]) }, timestamp);
    const entries = published.map((p) => JSON.parse(p.data) as { timestamp?: string; errorCodes?: number[] });
    assert.deepEqual(
      entries.map((e) => [e.timestamp, e.errorCodes?.length]),
      [
        [undefined, undefined],
        [undefined, 1],
        ["1795600000", 20],
      ],
    );
  });

  test("every event belongs to one component (its NATS user may publish it)", () => {
    const all = Object.values(AUDIT_EVENTS).flat();
    assert.equal(new Set(all).size, all.length);
  });
});

describe("inbound signatures", () => {
  const key = "a-test-signing-key";
  const subject = "unmix.inbound.u0123";
  const data = Buffer.from('{"v":1,"id":"wamid.X"}');
  test("what the webhook signed verifies; anything changed, or unsigned, does not", () => {
    const sig = signInbound(key, subject, "wamid.X", data);
    assert.equal(SIGNATURE_HEADER, "Unmix-Signature");
    assert.equal(verifyInbound(key, subject, "wamid.X", data, sig), "valid");
    assert.equal(verifyInbound(key, subject, "wamid.X", data, undefined), "unsigned");
    assert.equal(verifyInbound(key, "unmix.inbound.u9999", "wamid.X", data, sig), "forged", "another user's subject");
    assert.equal(verifyInbound(key, subject, "wamid.Y", data, sig), "forged", "another dedup id");
    assert.equal(verifyInbound(key, subject, "wamid.X", Buffer.from('{"v":1,"id":"wamid.Y"}'), sig), "forged", "another payload");
    assert.equal(verifyInbound("another-key", subject, "wamid.X", data, sig), "forged", "another key");
    assert.equal(verifyInbound(key, subject, undefined, data, sig), "forged", "no dedup id");
    assert.equal(verifyInbound(key, subject, "wamid.X", data, "v1=zz"), "forged");
  });
});
