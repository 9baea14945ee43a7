// The object store's configuration on its own, so a process can validate it without loading the
// minio client (object-store.ts), which costs tens of MB of memory.
import { z } from "zod";
import { env } from "./config.ts";

export const ObjectStoreConfig = z.object({
  S3_ENDPOINT: env.url().describe("e.g. http://minio:9000"),
  S3_REGION: z.string().default("us-east-1"),
  S3_BUCKET: z.string().min(3),
  S3_ACCESS_KEY: z.string().min(1),
  S3_SECRET_KEY: z.string().min(1),
  /** The endpoint job pods use for presigned URLs when it differs from ours (another DNS name). */
  S3_PUBLIC_ENDPOINT: env.url().optional(),
});
export type ObjectStoreConfig = z.infer<typeof ObjectStoreConfig>;
