// Who an operator is and what they may do, asked of the API server the way kube-rbac-proxy does: a
// TokenReview (authentication.k8s.io/v1) turns a bearer token into a user, a SubjectAccessReview
// (authorization.k8s.io/v1) asks RBAC about a verb on a virtual resource. Answers are kept briefly
// in a bounded cache (lru-cache), so a page of requests costs the API server one review each, not
// one per request; the cache is keyed by the token's hash, never the token.
import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { k8s } from "./kube.ts";

export interface Operator {
  username: string;
  groups: string[];
  uid?: string;
  extra?: Record<string, string[]>;
}

/** A verb on a resource that exists only in RBAC (no API serves it), e.g. unmix.dev/support. */
export interface VirtualResource {
  group: string;
  resource: string;
  /** Omitted: a cluster-wide check (a ClusterRoleBinding grants it); set: a RoleBinding there also does. */
  namespace?: string;
}

export interface OperatorAccessOptions {
  /**
   * The audiences a token must be meant for. Empty: the API server's own, so any token the API server
   * takes is taken here too (and could be replayed against it by whoever reads it here).
   */
  audiences: string[];
  /** How long an answer (yes or no) is kept; 0 turns the cache off. */
  cacheSeconds: number;
  /** How many answers are kept at most (least recently used go first). */
  cacheEntries: number;
}

const hash = (s: string) => createHash("sha256").update(s).digest("hex");

export class OperatorAccess {
  private readonly authn: k8s.AuthenticationV1Api;
  private readonly authz: k8s.AuthorizationV1Api;
  private readonly tokens?: LRUCache<string, { operator: Operator | null }>;
  private readonly decisions?: LRUCache<string, { allowed: boolean }>;
  private readonly o: OperatorAccessOptions;
  constructor(kc: k8s.KubeConfig, o: OperatorAccessOptions) {
    this.o = o;
    this.authn = kc.makeApiClient(k8s.AuthenticationV1Api);
    this.authz = kc.makeApiClient(k8s.AuthorizationV1Api);
    if (o.cacheSeconds > 0) {
      const cache = { max: o.cacheEntries, ttl: o.cacheSeconds * 1000 };
      this.tokens = new LRUCache(cache);
      this.decisions = new LRUCache(cache);
    }
  }

  /** The operator a token belongs to, or null when the API server refuses it (forged, expired, other audience). Throws when it cannot be asked. */
  async authenticate(token: string): Promise<Operator | null> {
    const key = hash(token);
    const kept = this.tokens?.get(key);
    if (kept) return kept.operator;
    const review = await this.authn.createTokenReview({
      body: {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        spec: { token, ...(this.o.audiences.length ? { audiences: this.o.audiences } : {}) },
      },
    });
    const s = review.status;
    // with audiences asked for, the token must be meant for one of them (the API server says which)
    const meant = !this.o.audiences.length || (s?.audiences ?? []).some((a) => this.o.audiences.includes(a));
    const operator =
      s?.authenticated && s.user?.username && meant
        ? {
            username: s.user.username,
            groups: s.user.groups ?? [],
            ...(s.user.uid ? { uid: s.user.uid } : {}),
            ...(s.user.extra ? { extra: s.user.extra } : {}),
          }
        : null;
    this.tokens?.set(key, { operator });
    return operator;
  }

  /** Whether RBAC lets the operator do `verb` on the resource. Throws when the API server cannot be asked. */
  async allowed(operator: Operator, verb: string, on: VirtualResource): Promise<boolean> {
    const key = hash(JSON.stringify([operator.username, operator.uid, [...operator.groups].sort(), operator.extra, verb, on]));
    const kept = this.decisions?.get(key);
    if (kept) return kept.allowed;
    const review = await this.authz.createSubjectAccessReview({
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: operator.username,
          groups: operator.groups,
          ...(operator.uid ? { uid: operator.uid } : {}),
          ...(operator.extra ? { extra: operator.extra } : {}),
          resourceAttributes: { group: on.group, resource: on.resource, verb, ...(on.namespace ? { namespace: on.namespace } : {}) },
        },
      },
    });
    const allowed = review.status?.allowed === true && review.status.denied !== true;
    this.decisions?.set(key, { allowed });
    return allowed;
  }
}
