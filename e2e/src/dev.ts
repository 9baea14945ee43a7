// `make dev`: the whole product on the real local stack (control plane with a GPU node, NATS, MinIO,
// the WhatsApp simulator, the ingress, the controller, the job image on CPU), with the URLs printed.
// Ctrl-C (or SIGTERM) stops everything and removes the stack's folder.
import { ADMIN_AUDIENCE } from "@unmix/api/support";
import { OPERATORS_NAMESPACE } from "./operators.ts";
import { htdemucsWeightsDir, OPERATOR, startProduct } from "./product.ts";

const simPort = Number(process.env.WHATSAPP_SIM_PORT ?? 8090);
process.stdout.write("starting the local stack (etcd, kube-apiserver, controller-manager, scheduler, node agent, NATS, MinIO)…\n");
const t0 = Date.now();
const p = await startProduct({ simPort, gpus: Number(process.env.UNMIX_DEV_GPUS ?? 1) });
// an approved template for policy broadcasts from the admin endpoints (a pending one to see the refusal)
p.sim.setTemplate("policy_update", "en", "APPROVED");
p.sim.setTemplate("policy_update_draft", "en", "PENDING");
const s3 = p.stack.s3 as NonNullable<typeof p.stack.s3>;
const kubeconfig = p.stack.kube?.kubeconfigPath as string;

const modelLine =
  p.model.name === "htdemucs"
    ? `  model:        ${p.model.description}`
    : [
        `  model:        ${p.model.description}: keeps the voice, removes the music.`,
        `                For Demucs, the GPU engine of production, put its weights in ${htdemucsWeightsDir()}/`,
        "                (htdemucs.yaml + 955717e8-8726e21a.th; see job-image/README.md) and run make dev again.",
      ].join("\n");

process.stdout.write(
  [
    "",
    `unmix is running (started in ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    "",
    `  chat page:    ${p.sim.baseUrl}/          ← send a voice note, a video or an MP3 here`,
    modelLine,
    "",
    `  webhook:      ${p.ingress.url}/webhook   (ingress, ROLE=all; metrics ${p.ingress.url}/metrics)`,
    `  admin:        ${p.adminUrl}   (operators are Kubernetes users; with KUBECONFIG below:`,
    `                kubectl unmix --admin-url ${p.adminUrl} --service-account ${OPERATORS_NAMESPACE}/${OPERATOR} jobs)`,
    "                broadcast templates: policy_update (en, APPROVED), policy_update_draft (en, PENDING)",
    `  console:      ${p.adminUrl}/console   (its token: kubectl create token ${OPERATOR} -n ${OPERATORS_NAMESPACE} --audience ${ADMIN_AUDIENCE})`,
    `  controller:   ${p.controller.url}/metrics`,
    `  kubernetes:   export KUBECONFIG=${kubeconfig}`,
    `                kubectl get sj -n ${p.namespace}   ·   kubectl get jobs,pods -n ${p.namespace}`,
    `  NATS:         ${p.stack.nats?.url}   (operator: --user operator --password ${p.stack.nats?.users.operator.password}; each component has its own user)`,
    `  S3 (MinIO):   ${s3.endpoint}  bucket ${p.bucket}  (access key ${s3.accessKey})`,
    `  traces:       OTLP receiver at ${p.otlp.url} (spans kept in memory)`,
    `  logs:         ${p.stack.dir}/*.log, job pods in ${p.podLogDir}/`,
    "",
    "Ctrl-C stops everything.",
    "",
  ].join("\n"),
);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  // registered after startProduct: processes.ts's own handler (kill all groups, exit) runs first
  // only if we do not take over, so remove it and stop cleanly instead
  process.removeAllListeners(signal);
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write("\nstopping…\n");
    void p.stop().then(
      () => {
        process.stdout.write("stopped.\n");
        process.exit(0);
      },
      (err) => {
        process.stderr.write(`stop failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  });
}
