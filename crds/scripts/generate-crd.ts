// Writes crds/separationjobs.unmix.dev.yaml (and the chart's copy) from the zod schema in src/separationjob.ts.
import { writeFileSync } from "node:fs";
import { stringify } from "yaml";
import { crdManifest } from "../src/separationjob.ts";

export const CRD_FILE = new URL("../separationjobs.unmix.dev.yaml", import.meta.url);
/** The Helm chart ships its own copy (charts cannot read outside their folder). */
export const CHART_CRD_FILE = new URL("../../charts/unmix/files/crds/separationjobs.unmix.dev.yaml", import.meta.url);
export const renderCrd = () =>
  `# Generated from crds/src/separationjob.ts by \`npm run generate -w crds\`. Do not edit.\n${stringify(crdManifest(), { lineWidth: 0 })}`;

if (import.meta.main) for (const file of [CRD_FILE, CHART_CRD_FILE]) writeFileSync(file, renderCrd());
