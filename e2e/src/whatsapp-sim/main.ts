// `node e2e/src/whatsapp-sim/main.ts`: the simulator on its own, configured from the environment
// (used by `make dev`). Prints the chat page's URL and the Graph API base URL for the services.
import { env, loadConfigOrExit } from "@unmix/core/config";
import { z } from "zod";
import { startWhatsAppSimulator, type WhatsAppSimulator } from "./index.ts";

const SimulatorConfig = z.object({
  WHATSAPP_SIM_HOST: z.string().default("127.0.0.1"),
  WHATSAPP_SIM_PORT: env.port(8090),
  WHATSAPP_APP_SECRET: env.secret(),
  WHATSAPP_ACCESS_TOKEN: z.string().min(1),
  WHATSAPP_WEBHOOK_URL: env.url().optional(),
  WHATSAPP_API_VERSION: z
    .string()
    .regex(/^v\d+\.\d+$/)
    .default("v24.0"),
  WHATSAPP_PHONE_NUMBER_ID: z.string().regex(/^\d+$/).optional(),
  WHATSAPP_SIM_STATUS_RECEIPTS: env.bool(true),
  WHATSAPP_SIM_USER_WA_ID: z
    .string()
    .regex(/^\d{6,15}$/)
    .optional(),
  WHATSAPP_SIM_USER_NAME: z.string().optional(),
});

export async function main(environment: Record<string, string | undefined> = process.env): Promise<WhatsAppSimulator> {
  const c = loadConfigOrExit(SimulatorConfig, environment);
  const sim = await startWhatsAppSimulator({
    host: c.WHATSAPP_SIM_HOST,
    port: c.WHATSAPP_SIM_PORT,
    appSecret: c.WHATSAPP_APP_SECRET,
    accessToken: c.WHATSAPP_ACCESS_TOKEN,
    webhookUrl: c.WHATSAPP_WEBHOOK_URL,
    version: c.WHATSAPP_API_VERSION,
    phoneNumberId: c.WHATSAPP_PHONE_NUMBER_ID,
    statusReceipts: c.WHATSAPP_SIM_STATUS_RECEIPTS,
    defaultUser: c.WHATSAPP_SIM_USER_WA_ID ? { waId: c.WHATSAPP_SIM_USER_WA_ID, name: c.WHATSAPP_SIM_USER_NAME ?? "Test user" } : undefined,
  });
  process.stdout.write(
    [
      "WhatsApp simulator",
      `  chat page:      ${sim.baseUrl}/`,
      `  Graph API:      WHATSAPP_API_URL=${sim.baseUrl} WHATSAPP_API_VERSION=${sim.version}`,
      `  phone number:   WHATSAPP_PHONE_NUMBER_ID=${sim.phoneNumberId}`,
      `  webhooks to:    ${c.WHATSAPP_WEBHOOK_URL ?? "(none: the chat page cannot reach the bot)"}`,
      "",
    ].join("\n"),
  );
  return sim;
}

if (import.meta.main) {
  const sim = await main();
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void sim.stop().then(() => process.exit(0)));
}
