// The webhook parser keeps only what the data policy lists (P1) and understands every shape Meta
// sends: batches, BSUID-only senders, every message type, statuses and errors.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { separationJobName } from "@unmix/api/separationjob";
import { buildMessage, messagesEnvelope, statusEnvelope } from "@unmix/e2e/whatsapp-sim/webhooks";
import { EnvelopeError, extract, InboundMessage, messageRef, parseCommand } from "../src/envelope.ts";

const business = { wabaId: "318842120093457", phoneNumberId: "487201336590124", displayPhoneNumber: "4915120004711" };
const lena = { waId: "4917623456789", userId: "DE.58201947736120048815", name: "Lena K." };
const media = {
  id: "1298034471162559",
  mimeType: "audio/ogg; codecs=opus",
  sha256: "q3Zb8Xh0mB1rU2m9yWfJdE6kT4pLs7VcN5aR0oGiHxY=",
  url: "https://lookaside.fbsbx.com/x",
};
const T = Date.parse("2026-11-25T10:00:00Z");

describe("what the parser keeps (P1)", () => {
  test("P1: a voice note: sender, profile name, type, media reference, id, timestamp, business number — nothing else", () => {
    const env = messagesEnvelope(business, [buildMessage({ type: "audio", id: "wamid.A", quoting: "wamid.Q" }, lena, T, media)]);
    const { messages } = extract(env);
    assert.deepEqual(messages, [
      {
        v: 1,
        id: "wamid.A",
        timestamp: String(T / 1000),
        phoneNumberId: business.phoneNumberId,
        sender: { waId: lena.waId, userId: lena.userId, profileName: lena.name },
        type: "audio",
        media: { id: media.id, mimeType: media.mimeType, sha256: media.sha256, voice: true },
      },
    ]);
    assert.equal(InboundMessage.safeParse(messages[0]).success, true);
  });

  test("a video's caption, a location, a reaction and an ordinary text body are not kept", () => {
    const built = [
      buildMessage({ type: "video", id: "wamid.V", caption: "my secret caption" }, lena, T, { ...media, mimeType: "video/mp4" }),
      buildMessage({ type: "location", id: "wamid.L", latitude: 52.5, longitude: 13.4, name: "Home", address: "Secret street 1" }, lena, T, undefined),
      buildMessage({ type: "reaction", id: "wamid.R", messageId: "wamid.X", emoji: "👍" }, lena, T, undefined),
      buildMessage({ type: "text", id: "wamid.T", body: "my address is Secret street 1" }, lena, T, undefined),
      buildMessage({ type: "image", id: "wamid.I", caption: "look" }, lena, T, { ...media, mimeType: "image/jpeg" }),
    ];
    const { messages } = extract(messagesEnvelope(business, built));
    const json = JSON.stringify(messages);
    for (const secret of ["my secret caption", "Secret street", "52.5", "👍", "wamid.X", "look", "lookaside"])
      assert.ok(!json.includes(secret), `${secret} was kept`);
    assert.deepEqual(
      messages.map((m) => [m.type, m.media?.id ?? null, m.command ?? null]),
      [
        ["video", media.id, null],
        ["location", null, null],
        ["reaction", null, null],
        ["text", null, null],
        ["image", null, null],
      ],
    );
  });

  test("a text naming a command keeps only the command", () => {
    for (const [body, command] of [
      ["help", "help"],
      ["  HELP  ", "help"],
      ["Delete", "delete"],
      ["/stop", "stop"],
      ["start!", "start"],
      ["stop please", undefined],
      ["helpme", undefined],
    ] as const) {
      assert.equal(parseCommand(body), command, body);
      const { messages } = extract(messagesEnvelope(business, [buildMessage({ type: "text", body }, lena, T, undefined)]));
      assert.equal(messages[0]?.command, command);
      assert.ok(!JSON.stringify(messages).includes(body.trim()) || command !== undefined);
    }
  });

  test("a username-only sender (no from, no wa_id) is identified by the business-scoped user id", () => {
    const bsuidOnly = { userId: "US.13491208655302741918", name: "DJ" };
    const { messages } = extract(messagesEnvelope(business, [buildMessage({ type: "text", body: "help" }, bsuidOnly, T, undefined)]));
    assert.deepEqual(messages[0]?.sender, { userId: bsuidOnly.userId, profileName: "DJ" });
  });

  test("a batch in every layout yields every message with its own sender", () => {
    const other = { waId: "393471234567", name: "Marco" };
    const built = [
      buildMessage({ type: "text", body: "a", id: "wamid.1" }, lena, T, undefined),
      buildMessage({ type: "text", body: "b", id: "wamid.2" }, other, T, undefined),
    ];
    for (const layout of ["messages", "changes", "entries"] as const) {
      const { messages } = extract(messagesEnvelope(business, built, layout));
      assert.deepEqual(
        messages.map((m) => [m.id, m.sender.waId, m.sender.profileName]),
        [
          ["wamid.1", lena.waId, lena.name],
          ["wamid.2", other.waId, "Marco"],
        ],
        layout,
      );
    }
  });

  test("a status's biz_opaque_callback_data is kept only when it names a SeparationJob (the reply's receipt)", () => {
    const name = separationJobName("wamid.USER");
    const of = (callbackData?: string) =>
      extract(
        statusEnvelope(business, {
          messageId: "wamid.OUT",
          status: "delivered",
          recipient: lena.waId,
          timestampMs: T,
          ...(callbackData ? { callbackData } : {}),
        }),
      ).statuses;
    assert.deepEqual(of(name), [{ ref: messageRef("wamid.OUT"), status: "delivered", timestamp: String(T / 1000), errorCodes: [], job: name }]);
    for (const other of [undefined, "campaign-42", `${name}x`, "sj-../../etc"]) assert.equal(of(other)[0]?.job, undefined, String(other));
  });

  test("status receipts become references (a hash of our wamid) with their error codes; value errors are kept by code", () => {
    const failed = statusEnvelope(business, {
      messageId: "wamid.OUT",
      status: "failed",
      recipient: lena.waId,
      timestampMs: T,
      error: { code: 131047, title: "Re-engagement message" },
    });
    const x = extract(failed);
    assert.deepEqual(x.statuses, [{ ref: messageRef("wamid.OUT"), status: "failed", timestamp: String(T / 1000), errorCodes: [131047] }]);
    assert.ok(!JSON.stringify(x).includes(lena.waId));
    const withErrors = {
      object: "whatsapp_business_account",
      entry: [
        {
          id: "1",
          changes: [
            {
              field: "messages",
              value: { messaging_product: "whatsapp", metadata: { phone_number_id: "1" }, errors: [{ code: 131000, title: "Something went wrong" }] },
            },
          ],
        },
      ],
    };
    assert.deepEqual(extract(withErrors).errors, [{ code: 131000, title: "Something went wrong" }]);
  });

  test("other webhook fields are counted, not parsed", () => {
    const x = extract({
      object: "whatsapp_business_account",
      entry: [{ id: "1", changes: [{ field: "message_template_status_update", value: { event: "APPROVED" } }] }],
    });
    assert.deepEqual(x.otherFields, ["message_template_status_update"]);
    assert.equal(x.messages.length, 0);
  });

  test("shapes that are not a WhatsApp envelope are refused with the path of the problem", () => {
    const bad: unknown[] = [
      null,
      [],
      { object: "page", entry: [] },
      { object: "whatsapp_business_account" },
      { object: "whatsapp_business_account", entry: [] },
      {
        object: "whatsapp_business_account",
        entry: [{ changes: [{ field: "messages", value: { messages: [{ id: "wamid.1", timestamp: "1", type: "text", from: "1" }] } }] }],
      },
      {
        object: "whatsapp_business_account",
        entry: [
          { changes: [{ field: "messages", value: { metadata: { phone_number_id: "1" }, messages: [{ id: "wamid.1", timestamp: "1", type: "text" }] } }] },
        ],
      },
      {
        object: "whatsapp_business_account",
        entry: [
          {
            changes: [
              {
                field: "messages",
                value: { metadata: { phone_number_id: "1" }, messages: [{ id: "wamid.1", timestamp: "yesterday", type: "text", from: "1" }] },
              },
            ],
          },
        ],
      },
    ];
    for (const body of bad) assert.throws(() => extract(body), EnvelopeError, JSON.stringify(body));
  });
});
