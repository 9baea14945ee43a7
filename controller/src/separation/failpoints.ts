// Named crash points for the crash tests (in the manner of etcd's gofail): with
// UNMIX_FAILPOINTS=reply:sent the process kills itself with SIGKILL the first time it reaches that
// point, as a node failure or OOM kill would. Unset in production, where failpoint() does nothing.
export const FAILPOINTS = [
  "fetch:stored", // media in the object store, status not yet written
  "fetch:recorded", // MediaFetched written
  "job:created", // Job created, status not yet written
  "job:audited", // its audit entry stored, JobCreated not yet written
  "job:recorded", // JobCreated written
  "separated:recorded", // manifest read and Separated written
  "reply:uploaded", // result uploaded to WhatsApp, Sending not yet written
  "reply:sending", // Sending written, Graph API not yet called
  "reply:sent", // WhatsApp accepted the reply, Sent not yet written
  "reply:recorded", // Sent written
  "finalize:cached", // cache entry recorded, input and intermediates not yet deleted
  "finalize:cleaned", // input and intermediates deleted, Succeeded not yet written
  "finalize:audited", // replied/failed and input-deleted entries stored, Succeeded not yet written
  "failure:recorded", // failure written, user not yet told
] as const;
export type Failpoint = (typeof FAILPOINTS)[number];

export type FailpointHook = (name: Failpoint) => void;

export function failpointsFromEnv(value: string | undefined = process.env.UNMIX_FAILPOINTS): FailpointHook {
  const armed = new Set(
    (value ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );
  if (armed.size === 0) return () => {};
  for (const name of armed) if (!(FAILPOINTS as readonly string[]).includes(name)) throw new Error(`UNMIX_FAILPOINTS: unknown failpoint ${name}`);
  return (name) => {
    if (!armed.has(name)) return;
    process.stderr.write(`failpoint ${name}: killing the controller\n`);
    process.kill(process.pid, "SIGKILL");
    // block until the signal lands: not one more line of the controller may run
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
  };
}
