// The controller's S3 signing (aws4 under framework/s3.ts) against AWS's published SigV4 vectors
// (sigv4-vectors.ts names their sources). No network: s3-client.test.ts runs the client against MinIO.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { authorization, presignedPath, type SigningKeys } from "../src/framework/s3.ts";
import { S3, S3_KEYS, S3_PRESIGNED, SUITE, SUITE_KEYS, type Vector } from "./sigv4-vectors.ts";

const sign = (v: Vector, service: string, keys: SigningKeys) =>
  authorization({ service, region: "us-east-1", method: v.method, path: v.path, headers: v.headers, ...(v.body ? { body: v.body } : {}) }, keys);

const GROUPS: [string, string, SigningKeys, Vector[]][] = [
  ["the aws-sig-v4-test-suite", "service", SUITE_KEYS, SUITE],
  ["Amazon S3's documented examples", "s3", S3_KEYS, S3],
];
for (const [group, service, keys, vectors] of GROUPS) {
  describe(`SigV4: ${group}`, () => {
    for (const v of vectors) test(v.name, () => assert.equal(sign(v, service, keys), v.authorization));
  });
}

describe("SigV4: the rest of the S3 signing", () => {
  test("the presigned GET (query signing, UNSIGNED-PAYLOAD)", () => {
    const p = S3_PRESIGNED;
    const signed = presignedPath({ region: "us-east-1", method: "GET", host: p.host, path: p.path, expirySeconds: p.expirySeconds, at: p.at }, S3_KEYS);
    const url = new URL(signed, `https://${p.host}`);
    assert.equal(url.pathname, p.path);
    assert.deepEqual(Object.fromEntries(url.searchParams), p.query);
  });

  test("a changed signed header changes the signature", () => {
    const [v] = S3 as [Vector];
    assert.notEqual(sign({ ...v, headers: { ...v.headers, "x-amz-date": "20130524T000001Z" } }, "s3", S3_KEYS), v.authorization);
  });
});
