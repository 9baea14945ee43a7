// Reads the pinned versions and the binary cache shared with install.sh.
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const CACHE_DIR = process.env.UNMIX_CACHE ?? join(REPO_ROOT, ".cache");
export const BIN_DIR = join(CACHE_DIR, "bin");

export const versions: Record<string, string> = Object.fromEntries(
  readFileSync(join(REPO_ROOT, "e2e/stack/versions.env"), "utf8")
    .split("\n")
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => l.split("=", 2) as [string, string]),
);

export const bin = (name: string) => join(BIN_DIR, name);
