// The object store behind one narrow interface (S3 API through the minio client): inputs/ and the
// results/ cache. Business rules use this, never the client library.
import type { Readable } from "node:stream";
import * as Minio from "minio";
import type { ObjectStoreConfig } from "./object-store-config.ts";

export { ObjectStoreConfig } from "./object-store-config.ts";

export interface StoredObject {
  key: string;
  size: number;
  lastModified: Date;
}

export interface ObjectInfo extends StoredObject {
  contentType: string;
  metadata: Record<string, string>;
}

export interface ObjectStore {
  ensureBucket(): Promise<void>;
  put(key: string, body: Buffer | Readable, size: number | undefined, contentType: string, metadata?: Record<string, string>): Promise<void>;
  get(key: string): Promise<Readable>;
  getBuffer(key: string): Promise<Buffer>;
  /** undefined when the object does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  copy(fromKey: string, toKey: string, metadata?: Record<string, string>): Promise<void>;
  remove(keys: string[]): Promise<void>;
  list(prefix: string): AsyncIterable<StoredObject>;
  presignedGet(key: string, expirySeconds: number): Promise<string>;
  presignedPut(key: string, expirySeconds: number): Promise<string>;
  ping(): Promise<void>;
}

function clientFor(endpoint: string, c: ObjectStoreConfig): Minio.Client {
  const u = new URL(endpoint);
  return new Minio.Client({
    endPoint: u.hostname,
    port: u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80,
    useSSL: u.protocol === "https:",
    accessKey: c.S3_ACCESS_KEY,
    secretKey: c.S3_SECRET_KEY,
    region: c.S3_REGION,
    pathStyle: true,
  });
}

const isNotFound = (err: unknown) => {
  const code = (err as { code?: string }).code;
  return code === "NotFound" || code === "NoSuchKey" || code === "NoSuchObject";
};

export function createObjectStore(c: ObjectStoreConfig): ObjectStore {
  const client = clientFor(c.S3_ENDPOINT, c);
  // presigning is offline signing, so a second client pointed at the public name is free
  const signer = c.S3_PUBLIC_ENDPOINT ? clientFor(c.S3_PUBLIC_ENDPOINT, c) : client;
  const bucket = c.S3_BUCKET;
  return {
    async ensureBucket() {
      if (!(await client.bucketExists(bucket))) {
        try {
          await client.makeBucket(bucket, c.S3_REGION);
        } catch (err) {
          if ((err as { code?: string }).code !== "BucketAlreadyOwnedByYou") throw err;
        }
      }
    },
    async put(key, body, size, contentType, metadata = {}) {
      await client.putObject(bucket, key, body, size, {
        "Content-Type": contentType,
        ...Object.fromEntries(Object.entries(metadata).map(([k, v]) => [`x-amz-meta-${k}`, v])),
      });
    },
    get: (key) => client.getObject(bucket, key),
    async getBuffer(key) {
      const chunks: Buffer[] = [];
      for await (const chunk of await client.getObject(bucket, key)) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    },
    async stat(key) {
      try {
        const s = await client.statObject(bucket, key);
        const meta = s.metaData as Record<string, string>;
        const metadata: Record<string, string> = {};
        for (const [k, v] of Object.entries(meta)) if (k !== "content-type") metadata[k.replace(/^x-amz-meta-/, "")] = v;
        return { key, size: s.size, lastModified: s.lastModified, contentType: meta["content-type"] ?? "application/octet-stream", metadata };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async copy(fromKey, toKey, metadata) {
      const source = new Minio.CopySourceOptions({ Bucket: bucket, Object: fromKey });
      const dest = new Minio.CopyDestinationOptions({
        Bucket: bucket,
        Object: toKey,
        ...(metadata ? { MetadataDirective: "REPLACE" as const, UserMetadata: metadata } : {}),
      });
      await client.copyObject(source, dest);
    },
    async remove(keys) {
      if (keys.length > 0) await client.removeObjects(bucket, keys);
    },
    async *list(prefix) {
      for await (const o of client.listObjectsV2(bucket, prefix, true)) {
        if (o.name) yield { key: o.name, size: o.size, lastModified: o.lastModified };
      }
    },
    presignedGet: (key, expiry) => signer.presignedGetObject(bucket, key, expiry),
    presignedPut: (key, expiry) => signer.presignedPutObject(bucket, key, expiry),
    async ping() {
      await client.bucketExists(bucket);
    },
  };
}
