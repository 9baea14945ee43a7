// A server for the webhook benchmark, in its own process so the load generator does not share its
// event loop: `full` is the real ingress (ROLE=webhook: signature, zod validation, JetStream publish
// acknowledged); `bare` is a Fastify route that only checks the signature over the raw bytes.
// Prints one JSON line {"url": …} once listening; SIGTERM stops it.
import { verifyWebhookSignature } from "@unmix/core/whatsapp";
import Fastify from "fastify";
import { parseIngressConfig } from "../src/config.ts";
import { startIngress } from "../src/service.ts";

const mode = process.argv[2];
let stop: () => Promise<void>;
let url: string;

if (mode === "full") {
  const ingress = await startIngress(parseIngressConfig({ ...process.env, ROLE: "webhook", HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "warn" }));
  url = ingress.url;
  stop = ingress.stop;
} else if (mode === "bare") {
  const secret = process.env.WHATSAPP_APP_SECRET as string;
  const app = Fastify({ logger: false });
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer", bodyLimit: 3 * 1024 * 1024 }, (_req, body, done) => done(null, body));
  app.post("/webhook", async (req, reply) => {
    const header = req.headers["x-hub-signature-256"];
    if (!verifyWebhookSignature(req.body as Buffer, typeof header === "string" ? header : undefined, secret)) return reply.code(401).send("invalid signature");
    return reply.code(200).type("text/plain; charset=utf-8").send("ok");
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const a = app.server.address() as { port: number };
  url = `http://127.0.0.1:${a.port}`;
  stop = () => app.close();
} else {
  throw new Error("usage: server.ts full|bare");
}
process.stdout.write(`${JSON.stringify({ url })}\n`);
process.on("SIGTERM", () => {
  stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
