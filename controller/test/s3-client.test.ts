// The controller's S3 client against a real MinIO, and against core's minio-based ObjectStore: what
// one writes the other reads (the ingress looks up the cache the controller records).
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { createObjectStore, type ObjectStore } from "@unmix/core/object-store";
import { ResultCache } from "@unmix/core/result-cache";
import { type Stack, startStack } from "@unmix/e2e/stack";
import { createS3ObjectStore } from "../src/framework/s3.ts";

let stack: Stack;
let ours: ObjectStore;
let core: ObjectStore;

before(async () => {
  stack = await startStack({ components: ["s3"] });
  const s3 = stack.s3 as NonNullable<Stack["s3"]>;
  const config = { S3_ENDPOINT: s3.endpoint, S3_REGION: s3.region, S3_BUCKET: "s3-client-test", S3_ACCESS_KEY: s3.accessKey, S3_SECRET_KEY: s3.secretKey };
  ours = createS3ObjectStore(config);
  core = createObjectStore(config);
  await ours.ensureBucket();
  await ours.ensureBucket(); // twice: idempotent
});
after(async () => stack?.stop());

describe("the controller's S3 client", () => {
  test("put, stat, get and metadata, readable by core's client and back", async () => {
    const key = "inputs/sj-1 with space+plus/ü.ogg";
    await ours.put(key, Buffer.from("hello"), 5, "audio/ogg", { sha256: "abc", "separationjob-uid": "u-1" });
    const a = await ours.stat(key);
    const b = await core.stat(key);
    assert.deepEqual({ ...a, lastModified: undefined }, { ...b, lastModified: undefined });
    assert.equal(a?.contentType, "audio/ogg");
    assert.deepEqual(a?.metadata, { sha256: "abc", "separationjob-uid": "u-1" });
    assert.equal((await ours.getBuffer(key)).toString(), "hello");
    await core.put("from-core", Buffer.from("x"), 1, "text/plain", { k: "v" });
    assert.equal((await ours.stat("from-core"))?.metadata.k, "v");
    assert.equal(await ours.stat("missing"), undefined);
    await assert.rejects(ours.getBuffer("missing"), /NoSuchKey|does not exist/);
  });

  test("a stream of known size is stored as it is read (16 MB); one that fails midway stores nothing", async () => {
    const bytes = Buffer.alloc(16 * 1024 * 1024, 7);
    const chunks = function* (upTo = bytes.length) {
      for (let i = 0; i < upTo; i += 64 * 1024) yield bytes.subarray(i, Math.min(i + 64 * 1024, upTo));
    };
    await ours.put("streamed/ok", Readable.from(chunks()), bytes.length, "video/mp4", { sha256: "s" });
    assert.ok((await core.getBuffer("streamed/ok")).equals(bytes));
    assert.equal((await core.stat("streamed/ok"))?.metadata.sha256, "s");
    const failing = Readable.from(
      (function* () {
        yield* chunks(8 * 1024 * 1024);
        throw new Error("the source broke");
      })(),
    );
    await assert.rejects(ours.put("streamed/broken", failing, bytes.length, "video/mp4"), /the source broke/);
    assert.equal(await core.stat("streamed/broken"), undefined);
    await ours.remove(["streamed/ok"]);
  });

  test("list pages through many keys, odd names included", async () => {
    const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(4, "0")}${i % 100 === 0 ? " & <odd>" : ""}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => ours.put(k, Buffer.alloc(1), 1, "application/octet-stream")));
    const listed: string[] = [];
    for await (const o of ours.list("many/")) listed.push(o.key);
    assert.deepEqual(listed.sort(), [...keys].sort());
    await ours.remove(keys);
    const left: string[] = [];
    for await (const o of core.list("many/")) left.push(o.key);
    assert.deepEqual(left, []);
    await ours.remove(["never/existed"]); // idempotent
  });

  test("copy with new metadata keeps the content type; the cache recorded through it is core's cache", async () => {
    await ours.put("work/sj-2/output", Buffer.from("OggS..."), 7, "audio/ogg");
    const key = { sha256: "b".repeat(64), format: "ogg-opus" as const, model: "htdemucs" };
    await new ResultCache(ours, 3600_000).record(key, "work/sj-2/output", "u9", "555");
    const hit = await new ResultCache(core, 3600_000).lookup(key);
    assert.equal(hit?.whatsappMediaId, "555");
    assert.equal(hit?.contentType, "audio/ogg");
    assert.equal(hit?.size, 7);
  });

  test("presigned URLs work for GET and PUT, and the signature covers the key", async () => {
    const put = await ours.presignedPut("work/sj-3/output", 60);
    assert.equal((await fetch(put, { method: "PUT", body: "uploaded" })).status, 200);
    const get = await ours.presignedGet("work/sj-3/output", 60);
    assert.equal(await (await fetch(get)).text(), "uploaded");
    const tampered = new URL(get);
    tampered.pathname = tampered.pathname.replace("output", "other");
    assert.equal((await fetch(tampered)).status, 403);
    assert.equal(await (await fetch(await core.presignedGet("work/sj-3/output", 60))).text(), "uploaded", "core's URL for the same object");
  });

  test("wrong credentials are refused", async () => {
    const s3 = stack.s3 as NonNullable<Stack["s3"]>;
    const bad = createS3ObjectStore({
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: s3.region,
      S3_BUCKET: "s3-client-test",
      S3_ACCESS_KEY: s3.accessKey,
      S3_SECRET_KEY: "wrong-secret",
    });
    await assert.rejects(bad.put("x", Buffer.from("x"), 1, "text/plain"), /SignatureDoesNotMatch|signature/i);
  });
});
