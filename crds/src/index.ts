export * from "./separationjob.ts";
export * from "./conditions.ts";
export * from "./exit-codes.ts";
export * from "./config.ts";
export * from "./privacy.ts";
export * from "./sha256.ts";
