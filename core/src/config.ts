// Configuration from the environment, validated with zod at start-up. A missing or bad variable
// stops the process with a message that names it.
import { z } from "zod";

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Parses `env` (keys are the variable names) with `schema`; throws ConfigError naming each bad variable. */
export function parseConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined> = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((i) => {
      const name = i.path.join(".") || "(environment)";
      return env[String(i.path[0])] === undefined ? `${name} is not set: ${i.message}` : `${name} is invalid: ${i.message}`;
    }),
  );
}

/** For `main`: parse or print the problems and exit with status 78 (EX_CONFIG). */
export function loadConfigOrExit<S extends z.ZodType>(schema: S, env: Record<string, string | undefined> = process.env): z.infer<S> {
  try {
    return parseConfig(schema, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
}

/** Reusable field types for environment variables. */
export const env = {
  url: () => z.string().url(),
  port: (def: number) => z.coerce.number().int().min(0).max(65535).default(def),
  int: (def: number, min = 0) => z.coerce.number().int().min(min).default(def),
  seconds: (def: number) => z.coerce.number().min(0).default(def),
  bool: (def: boolean) =>
    z
      .enum(["true", "false", "1", "0", "yes", "no"])
      .default(def ? "true" : "false")
      .transform((v) => v === "true" || v === "1" || v === "yes"),
  secret: () => z.string().min(8, "must be at least 8 characters"),
  dnsLabel: () => z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a DNS-1123 label"),
  /** KUBE_NAMESPACE, the one name of the setting in every service: where the SeparationJobs live. */
  namespace: () => env.dnsLabel().default("default"),
  list: () =>
    z
      .string()
      .default("")
      .transform((v) =>
        v
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean),
      ),
};
