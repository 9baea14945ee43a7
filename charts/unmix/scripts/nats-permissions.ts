// Writes charts/unmix/files/nats-permissions.json from core/src/nats-permissions.ts, the one
// definition of what each component's NATS user may do; the chart renders the NATS server's
// `authorization` block from it. `--check` changes nothing and fails when the file is stale.
//   node charts/unmix/scripts/nats-permissions.ts [--check]
import { readFileSync, writeFileSync } from "node:fs";
import { natsUsers } from "@unmix/core/nats-permissions";

const file = new URL("../files/nats-permissions.json", import.meta.url);
const text = `${JSON.stringify(natsUsers(), null, 2)}\n`;
if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(file, "utf8");
  } catch {}
  if (current !== text) {
    process.stderr.write("charts/unmix/files/nats-permissions.json is stale: run node charts/unmix/scripts/nats-permissions.ts\n");
    process.exit(1);
  }
} else writeFileSync(file, text);
