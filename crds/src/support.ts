// Operator access to the support console, as RBAC sees it: verbs on a resource that exists only in
// RBAC (no API serves it), checked by the ingress's admin listener with a SubjectAccessReview,
// granted by the chart's ClusterRoles, and the audience an operator's token must be minted for.

/** The virtual resource (RBAC rules: apiGroups [unmix.dev], resources [support]). */
export const SUPPORT_RESOURCE = { group: "unmix.dev", resource: "support" } as const;

/** list: recent messages and users; get: one of them; purge: erase a user's data; broadcast: policy notices. */
export const SUPPORT_VERBS = ["list", "get", "purge", "broadcast"] as const;
export type SupportVerb = (typeof SUPPORT_VERBS)[number];

/**
 * What an operator's token is minted for (`kubectl create token <sa> --audience unmix-admin`): a
 * token sent to the admin listener is then no use against the API server itself.
 */
export const ADMIN_AUDIENCE = "unmix-admin";
