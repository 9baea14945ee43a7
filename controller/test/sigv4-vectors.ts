// Published AWS Signature V4 test vectors, copied as data for sigv4.test.ts.
//
// SUITE: cases of AWS's aws-sig-v4-test-suite (the .req requests and their .authz answers), as the
// AWS SDK for JavaScript v3 carries them: github.com/aws/aws-sdk-js-v3,
// packages/signature-v4/src/suite.fixture.ts (commit 0574f9a135c97b2cd989a2fb6f3e9effdc236696).
// Service "service", region us-east-1, 2015-08-30T12:36:00Z, the suite's example keys.
//
// S3: the worked examples of Amazon S3's documentation, "Signature Calculations for the
// Authorization Header: Transferring Payload in a Single Chunk" (GET bucket list, PUT object) and
// "Authenticating Requests: Using Query Parameters" (the presigned GET of test.txt), with the
// documentation's example keys.

export const SUITE_KEYS = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" };
export const S3_KEYS = { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" };

export interface Vector {
  name: string;
  method: string;
  /** Percent-encoded, query included. */
  path: string;
  headers: Record<string, string>;
  body?: string;
  authorization: string;
}

const suite = (name: string, method: string, path: string, headers: Record<string, string>, signed: string, signature: string, body?: string): Vector => ({
  name,
  method,
  path,
  headers: { host: "example.amazonaws.com", "x-amz-date": "20150830T123600Z", ...headers },
  ...(body !== undefined ? { body } : {}),
  authorization: `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=${signed}, Signature=${signature}`,
});

export const SUITE: Vector[] = [
  suite("get-vanilla", "GET", "/", {}, "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
  suite(
    "get-vanilla-query-order-key-case",
    "GET",
    "/?Param2=value2&Param1=value1",
    {},
    "host;x-amz-date",
    "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
  ),
  suite(
    "get-header-value-trim",
    "GET",
    "/",
    { "my-header1": "value1", "my-header2": '"a   b   c"' },
    "host;my-header1;my-header2;x-amz-date",
    "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
  ),
  suite(
    "get-unreserved",
    "GET",
    "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    {},
    "host;x-amz-date",
    "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
  ),
  suite(
    "post-vanilla-query-nonunreserved",
    "POST",
    "/?%40%23%24%25%5E=&%2B=%2F%2C%3F%3E%3C%60%22%3B%3A%5C%7C%5D%5B%7B%7D",
    {},
    "host;x-amz-date",
    "66c82657c86e26fb25238d0e69f011edc4c6df5ae71119d7cb98ed9b87393c1e",
  ),
  suite(
    "post-x-www-form-urlencoded",
    "POST",
    "/",
    { "content-type": "application/x-www-form-urlencoded" },
    "content-type;host;x-amz-date",
    "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    "Param1=value1",
  ),
];

const S3_HOST = "examplebucket.s3.amazonaws.com";
const s3Credential = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";

export const S3: Vector[] = [
  {
    name: "GET Bucket (list objects)",
    method: "GET",
    path: "/?max-keys=2&prefix=J",
    headers: {
      host: S3_HOST,
      "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "x-amz-date": "20130524T000000Z",
    },
    authorization: `${s3Credential}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7`,
  },
  {
    name: "PUT Object",
    method: "PUT",
    path: "/test%24file.text",
    headers: {
      host: S3_HOST,
      date: "Fri, 24 May 2013 00:00:00 GMT",
      "x-amz-date": "20130524T000000Z",
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
    },
    body: "Welcome to Amazon S3.",
    authorization: `${s3Credential}, SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd`,
  },
];

/** The presigned GET of https://examplebucket.s3.amazonaws.com/test.txt, valid 86,400 s from 2013-05-24T00:00:00Z. */
export const S3_PRESIGNED = {
  host: S3_HOST,
  path: "/test.txt",
  at: new Date("2013-05-24T00:00:00Z"),
  expirySeconds: 86_400,
  query: {
    "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
    "X-Amz-Date": "20130524T000000Z",
    "X-Amz-Expires": "86400",
    "X-Amz-SignedHeaders": "host",
    "X-Amz-Signature": "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
  },
};
