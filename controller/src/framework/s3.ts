// The object store (core's ObjectStore interface) for the controller: the dozen S3 calls it makes,
// path-style, over node:http(s), signed (AWS Signature V4) by the aws4 package. Core's
// implementation runs on the minio package, whose dependencies cost the controller about 35 MB of
// its 150 MB memory budget (controller/README.md, Memory); aws4 is a few kB with no dependencies.
// Tested against AWS's SigV4 test vectors, against MinIO, and against core's implementation
// (objects, metadata and presigned URLs are interchangeable).
import { createHash } from "node:crypto";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ObjectInfo, ObjectStore, ObjectStoreConfig, StoredObject } from "@unmix/core/object-store";
import aws4 from "aws4";

export class S3Error extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "S3Error";
    this.status = status;
    this.code = code;
  }
}

export interface SigningKeys {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface SignedRequest {
  service: string;
  region: string;
  method: string;
  /** Percent-encoded, query included. */
  path: string;
  /** Lower-case names; host and x-amz-date (the signing time) included. All of them are signed. */
  headers: Record<string, string>;
  body?: Buffer | string;
}

/** The Authorization header for `r`, its headers signed as they are (aws4 adds none). */
export function authorization(r: SignedRequest, keys: SigningKeys): string {
  const signer = new aws4.RequestSigner({ ...r, doNotModifyHeaders: true }, keys);
  // with doNotModifyHeaders aws4 would take the time from the clock, not from the header
  signer.datetime = r.headers["x-amz-date"];
  return signer.authHeader();
}

/** A presigned S3 URL's path and query; only the host is signed, the payload is not. */
export function presignedPath(r: { region: string; method: string; host: string; path: string; expirySeconds: number; at: Date }, keys: SigningKeys): string {
  const query = `X-Amz-Expires=${r.expirySeconds}&X-Amz-Date=${amzDate(r.at)}`;
  const signer = new aws4.RequestSigner({ service: "s3", region: r.region, method: r.method, host: r.host, path: `${r.path}?${query}`, signQuery: true }, keys);
  return signer.sign().path as string;
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
/** RFC 3986 encoding as SigV4 wants it (unreserved characters kept). */
const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const encPath = (key: string) => key.split("/").map(enc).join("/");
const amzDate = (d: Date) => d.toISOString().replace(/[-:]|\.\d{3}/g, "");
const xmlText = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
    .replace(/&amp;/g, "&");
const tag = (xml: string, name: string) => new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml)?.[1];

export function createS3ObjectStore(c: ObjectStoreConfig): ObjectStore {
  const api = new URL(c.S3_ENDPOINT);
  const pub = c.S3_PUBLIC_ENDPOINT ? new URL(c.S3_PUBLIC_ENDPOINT) : api;
  const bucket = c.S3_BUCKET;
  const region = c.S3_REGION;
  const keys = { accessKeyId: c.S3_ACCESS_KEY, secretAccessKey: c.S3_SECRET_KEY };
  const tls = api.protocol === "https:";
  const agent = tls ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const send = tls ? httpsRequest : httpRequest;

  /** A signed request; resolves with the response (body unread). */
  async function call(
    method: string,
    key: string | undefined,
    o: { query?: Record<string, string>; headers?: Record<string, string>; body?: Buffer; stream?: { body: Readable; size: number } } = {},
  ): Promise<IncomingMessage> {
    const qs = Object.entries(o.query ?? {})
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${enc(k)}=${enc(v)}`)
      .join("&");
    const path = `/${bucket}${key !== undefined ? `/${encPath(key)}` : ""}${qs ? `?${qs}` : ""}`;
    const headers: Record<string, string> = {
      host: api.host,
      "x-amz-date": amzDate(new Date()),
      // a stream is sent as it is read, so its hash is not known up front: S3's unsigned payload
      // (the request itself is signed; TLS or the cluster network protects the bytes)
      "x-amz-content-sha256": o.stream ? "UNSIGNED-PAYLOAD" : sha256(o.body ?? ""),
      ...(o.body ? { "content-length": String(o.body.length) } : {}),
      ...(o.stream ? { "content-length": String(o.stream.size) } : {}),
      ...Object.fromEntries(Object.entries(o.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    };
    headers.authorization = authorization({ service: "s3", region, method, path, headers, ...(o.body ? { body: o.body } : {}) }, keys);
    return new Promise((resolve, reject) => {
      const req = send(
        { protocol: api.protocol, hostname: api.hostname, port: api.port, path, method, headers, agent, signal: AbortSignal.timeout(120_000) },
        resolve,
      );
      if (!o.stream) {
        req.on("error", reject);
        req.end(o.body);
        return;
      }
      // the stream's own error (too large, wrong sha256, interrupted) wins over the aborted request's
      pipeline(o.stream.body, req).catch(reject);
    });
  }

  async function readAll(res: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async function ok(res: IncomingMessage, what: string): Promise<Buffer> {
    const body = await readAll(res);
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return body;
    const xml = body.toString("utf8");
    throw new S3Error(status, tag(xml, "Code") ?? (status === 404 ? "NotFound" : `HTTP${status}`), `${what}: ${tag(xml, "Message") ?? `HTTP ${status}`}`);
  }

  const metaHeaders = (metadata: Record<string, string> = {}) =>
    Object.fromEntries(Object.entries(metadata).map(([k, v]) => [`x-amz-meta-${k.toLowerCase()}`, v]));

  function infoOf(key: string, res: IncomingMessage): ObjectInfo {
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (k.startsWith("x-amz-meta-") && typeof v === "string") metadata[k.slice("x-amz-meta-".length)] = v;
    return {
      key,
      size: Number(res.headers["content-length"] ?? 0),
      lastModified: new Date(String(res.headers["last-modified"])),
      contentType: String(res.headers["content-type"] ?? "application/octet-stream"),
      metadata,
    };
  }

  const store: ObjectStore = {
    async ensureBucket() {
      const head = await call("HEAD", undefined);
      await readAll(head);
      if (head.statusCode === 200) return;
      const body =
        region && region !== "us-east-1"
          ? Buffer.from(`<CreateBucketConfiguration><LocationConstraint>${region}</LocationConstraint></CreateBucketConfiguration>`)
          : undefined;
      const res = await call("PUT", undefined, body ? { body } : {});
      try {
        await ok(res, `create bucket ${bucket}`);
      } catch (err) {
        if ((err as S3Error).code !== "BucketAlreadyOwnedByYou") throw err;
      }
    },
    async put(key, body, size, contentType, metadata = {}) {
      const headers = { "content-type": contentType, ...metaHeaders(metadata) };
      // a stream of known size goes straight through; of unknown size it is read first (small bodies only)
      const payload = Buffer.isBuffer(body)
        ? { body }
        : size !== undefined
          ? { stream: { body, size } }
          : { body: await readAll(body as unknown as IncomingMessage) };
      await ok(await call("PUT", key, { ...payload, headers }), `put ${key}`);
    },
    async get(key) {
      const res = await call("GET", key);
      if (res.statusCode !== 200) await ok(res, `get ${key}`);
      return res as Readable;
    },
    async getBuffer(key) {
      return ok(await call("GET", key), `get ${key}`);
    },
    async stat(key) {
      const res = await call("HEAD", key);
      await readAll(res);
      if (res.statusCode === 404) return undefined;
      if (res.statusCode !== 200) throw new S3Error(res.statusCode ?? 0, `HTTP${res.statusCode}`, `stat ${key}: HTTP ${res.statusCode}`);
      return infoOf(key, res);
    },
    async copy(fromKey, toKey, metadata) {
      const headers: Record<string, string> = { "x-amz-copy-source": `/${bucket}/${encPath(fromKey)}` };
      if (metadata) {
        // REPLACE resets every header: keep the content type
        const source = await store.stat(fromKey);
        Object.assign(headers, {
          "x-amz-metadata-directive": "REPLACE",
          "content-type": source?.contentType ?? "application/octet-stream",
          ...metaHeaders(metadata),
        });
      }
      const body = await ok(await call("PUT", toKey, { headers }), `copy ${fromKey} to ${toKey}`);
      // a copy can fail after a 200: the error is in the body
      if (body.includes("<Error>")) throw new S3Error(500, tag(body.toString(), "Code") ?? "CopyFailed", `copy ${fromKey}: ${tag(body.toString(), "Message")}`);
    },
    async remove(keys) {
      // one DELETE per key: idempotent (204 for a missing key), no Content-MD5 dance; a few at a time
      for (let i = 0; i < keys.length; i += 16) {
        await Promise.all(keys.slice(i, i + 16).map(async (k) => ok(await call("DELETE", k), `delete ${k}`)));
      }
    },
    async *list(prefix): AsyncIterable<StoredObject> {
      let token: string | undefined;
      do {
        const xml = (
          await ok(await call("GET", undefined, { query: { "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) } }), `list ${prefix}`)
        ).toString("utf8");
        for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
          const item = m[1] as string;
          yield { key: xmlText(tag(item, "Key") ?? ""), size: Number(tag(item, "Size") ?? 0), lastModified: new Date(tag(item, "LastModified") ?? 0) };
        }
        token = tag(xml, "IsTruncated") === "true" ? xmlText(tag(xml, "NextContinuationToken") ?? "") : undefined;
      } while (token);
    },
    presignedGet: async (key, expiry) => presign("GET", key, expiry),
    presignedPut: async (key, expiry) => presign("PUT", key, expiry),
    async ping() {
      const res = await call("HEAD", undefined);
      await readAll(res);
      if (res.statusCode !== 200) throw new S3Error(res.statusCode ?? 0, "NoSuchBucket", `bucket ${bucket}: HTTP ${res.statusCode}`);
    },
  };

  function presign(method: string, key: string, expirySeconds: number): string {
    const expiry = Math.min(Math.max(1, Math.floor(expirySeconds)), 604800);
    const signed = presignedPath({ region, method, host: pub.host, path: `/${bucket}/${encPath(key)}`, expirySeconds: expiry, at: new Date() }, keys);
    return `${pub.protocol}//${pub.host}${signed}`;
  }

  return store;
}
