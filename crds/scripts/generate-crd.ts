// Writes crds/separationjobs.unmix.dev.yaml from the zod schema in src/separationjob.ts.
import { writeFileSync } from "node:fs";
import { stringify } from "yaml";
import { crdManifest } from "../src/separationjob.ts";

export const CRD_FILE = new URL("../separationjobs.unmix.dev.yaml", import.meta.url);
export const renderCrd = () => `# Generated from crds/src/separationjob.ts by \`npm run generate -w crds\`. Do not edit.\n${stringify(crdManifest(), { lineWidth: 0 })}`;

if (import.meta.main) writeFileSync(CRD_FILE, renderCrd());
