export * from "./conditions.ts";
export * from "./config.ts";
export * from "./exit-codes.ts";
export * from "./privacy.ts";
export * from "./separationjob.ts";
export * from "./sha256.ts";
