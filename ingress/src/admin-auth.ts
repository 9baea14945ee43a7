// Who may do what on the admin listener. Every request names its operator with a bearer token and
// every route declares the permission it needs (`config: { permission }`, a verb on the virtual
// resource unmix.dev/support); a route that declares none is refused at start-up, so nothing on this
// listener is open by mistake. The one exception is declared, not assumed: `permission: "public"`
// serves without a token, and is accepted only on GET (and its HEAD) of a fixed path, no parameter
// and no wildcard: the console's own files, which hold no data and ask the operator for a token
// (console.ts). Any other route that declares it stops the start-up. Two ways to check (ADMIN_AUTH):
//   kubernetes    the token is checked with a TokenReview and the verb with a SubjectAccessReview, as
//                 kube-rbac-proxy does: operators are Kubernetes users (RBAC grants the verbs; the
//                 chart ships ClusterRoles), and the audit trail names each one
//   static-token  one shared ADMIN_TOKEN that may do everything, audited as "shared-admin-token"
//                 (for installs whose API server cannot review tokens)
// The seam for routes: `req.operator` ({username, groups}) after authentication, `config.permission`
// on the route, and `await req.may(verb)` where a handler needs to know about another verb.
import { timingSafeEqual } from "node:crypto";
import { SUPPORT_RESOURCE, type SupportVerb } from "@unmix/api/support";
import type { Operator, OperatorAccess, VirtualResource } from "@unmix/core/operator-access";
import type { FastifyPluginAsync, FastifyRequest, RouteOptions } from "fastify";

export const SHARED_TOKEN_OPERATOR = "shared-admin-token";

/** A route served without a token: only GET of a fixed path (a file that holds no data). */
export const PUBLIC = "public";

const methodsOf = (r: RouteOptions) => (Array.isArray(r.method) ? r.method : [r.method]);
/** Whether a route may be public: it reads one fixed path and nothing else. */
const mayBePublic = (r: RouteOptions) => methodsOf(r).every((m) => m === "GET" || m === "HEAD") && !/[:*]/.test(r.url);

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * The verb this route needs on unmix.dev/support; null: any authenticated operator; "public":
     * no token (GET of a fixed path only, checked at start-up).
     */
    permission?: SupportVerb | null | typeof PUBLIC;
  }
  interface FastifyRequest {
    /** The authenticated operator (set before any handler runs). */
    operator: Operator;
    /** Whether the operator may also do `verb` (e.g. to offer the purge screen). */
    may(verb: SupportVerb): Promise<boolean>;
  }
}

export type AdminAuthOptions =
  | { mode: "kubernetes"; access: OperatorAccess /** RoleBindings here grant the verbs too (ClusterRoleBindings everywhere). */; namespace: string }
  | { mode: "static-token"; token: string };

const bearer = (req: FastifyRequest) => /^Bearer ([^\s]+)$/.exec(req.headers.authorization ?? "")?.[1];

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The API server did not answer a review: 503, nothing done (Fastify's error handler uses statusCode). */
class AccessUnavailable extends Error {
  readonly statusCode = 503;
  constructor(cause: unknown) {
    super("the operator's access could not be checked: nothing was done", { cause });
    this.name = "AccessUnavailable";
  }
}

const plugin: FastifyPluginAsync<AdminAuthOptions> = async (app, o) => {
  const resource: VirtualResource = o.mode === "kubernetes" ? { ...SUPPORT_RESOURCE, namespace: o.namespace } : SUPPORT_RESOURCE;
  const authenticate = async (token: string): Promise<Operator | null> => {
    if (o.mode === "static-token") return sameToken(token, o.token) ? { username: SHARED_TOKEN_OPERATOR, groups: [] } : null;
    return o.access.authenticate(token).catch((err) => {
      throw new AccessUnavailable(err);
    });
  };
  const may = async (operator: Operator, verb: SupportVerb): Promise<boolean> => {
    if (o.mode === "static-token") return true;
    return o.access.allowed(operator, verb, resource).catch((err) => {
      throw new AccessUnavailable(err);
    });
  };

  app.decorateRequest("operator", null as unknown as Operator);
  app.decorateRequest("may", async () => false);

  // checked once every onRoute hook has run (a plugin whose routes cannot take config, e.g. static
  // files, may set it from its own onRoute hook)
  const routes: RouteOptions[] = [];
  app.addHook("onRoute", (route) => {
    routes.push(route);
  });
  app.addHook("onReady", async () => {
    const undeclared = routes.filter((r) => r.config?.permission === undefined).map((r) => `${r.method} ${r.url}`);
    if (undeclared.length) throw new Error(`admin routes declare no permission (config.permission): ${undeclared.join(", ")}`);
    const open = routes.filter((r) => r.config?.permission === PUBLIC && !mayBePublic(r)).map((r) => `${methodsOf(r).join(",")} ${r.url}`);
    if (open.length) throw new Error(`admin routes may be public only for GET of a fixed path: ${open.join(", ")}`);
  });

  app.addHook("onRequest", async (req, reply) => {
    if (req.routeOptions.config?.permission === PUBLIC) return;
    const unauthorized = (why: string) => {
      req.log.warn({ path: req.routeOptions.url }, `admin request refused: ${why}`);
      return reply.code(401).header("www-authenticate", 'Bearer realm="unmix-admin"').send({ error: "unauthorized" });
    };
    const token = bearer(req);
    if (!token) return unauthorized("no bearer token");
    const operator = await authenticate(token);
    if (!operator) return unauthorized("the token was not accepted");
    req.operator = operator;
    req.may = (verb) => may(operator, verb);
    const verb = req.routeOptions.config?.permission;
    if (!verb) return; // authentication alone, or an unknown path (404 follows)
    if (!(await may(operator, verb))) {
      req.log.warn({ operator: operator.username, verb }, "admin request refused: permission missing");
      return reply.code(403).send({
        error: "forbidden",
        missing: { ...SUPPORT_RESOURCE, verb },
        message: `${operator.username} may not ${verb} ${SUPPORT_RESOURCE.group}/${SUPPORT_RESOURCE.resource}`,
      });
    }
  });

  app.addHook("onError", async (req, _reply, err) => {
    if (err instanceof AccessUnavailable)
      req.log.error({ err: { message: (err.cause as Error).message } }, "admin request refused: the API server did not answer a review");
  });
};
// decorates and hooks the admin app itself (what fastify-plugin does), so every route registered after it is covered
(plugin as unknown as Record<symbol, boolean>)[Symbol.for("skip-override")] = true;

export const adminAuth = plugin;
