// The support console: a plain page (HTML, CSS, two ES modules and an icon from ingress/console/, no framework,
// nothing from a CDN) served on the admin listener at /console. The page holds no data: it asks the
// operator for their Kubernetes token (audience unmix-admin) and calls the admin endpoints with it
// (admin.ts), so its files are the admin listener's only public routes (admin-auth.ts PUBLIC: GET of
// a fixed path, checked at start-up). Five fixed files read once at start-up, not a static-file server: there is no directory to
// list or path to traverse, and each answer carries a CSP that allows only these files and calls
// back to this listener (no inline script or style, no other origin, no framing).
import { readFileSync } from "node:fs";
import type { FastifyPluginAsync } from "fastify";
import { PUBLIC } from "./admin-auth.ts";

const DIR = new URL("../console/", import.meta.url);

const TYPES = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", svg: "image/svg+xml" } as const;

/** The page's files, by the name it asks for them under /console/. */
export const CONSOLE_FILES = ["console.css", "console.js", "api.js", "icon.svg"] as const;

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const HEADERS = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

export const consoleRoutes: FastifyPluginAsync = async (app) => {
  const load = (name: string) => readFileSync(new URL(name, DIR), "utf8");
  const page = load("index.html");
  const opts = { config: { permission: PUBLIC } } as const;
  app.get("/console", opts, async (_req, reply) => reply.headers(HEADERS).type(TYPES.html).send(page));
  for (const name of CONSOLE_FILES) {
    const body = load(name);
    const type = TYPES[name.slice(name.lastIndexOf(".") + 1) as keyof typeof TYPES];
    app.get(`/console/${name}`, opts, async (_req, reply) => reply.headers(HEADERS).type(type).send(body));
  }
};
