// Operators of the admin listener as the API server knows them, for the tests and `make dev`:
// ServiceAccounts in their own namespace, bound to ClusterRoles with verbs on unmix.dev/support (the
// virtual resource ingress/src/admin-auth.ts asks about), with tokens for the admin audience.
import { ADMIN_AUDIENCE, SUPPORT_RESOURCE, type SupportVerb } from "@unmix/api/support";
import { isAlreadyExists, k8s } from "@unmix/core/kube";

/** Where the tests' operator ServiceAccounts live (as an SRE team's namespace would). */
export const OPERATORS_NAMESPACE = "unmix-operators";

/**
 * An operator as the API server knows one: a ServiceAccount, bound (ClusterRoleBinding) to a
 * ClusterRole with these verbs on unmix.dev/support, and a token requested for it (TokenRequest) for
 * the admin listener's audience unless told otherwise.
 */
export async function makeOperator(
  kc: k8s.KubeConfig,
  name: string,
  verbs: SupportVerb[],
  o: { audience?: string; expirationSeconds?: number } = {},
): Promise<{ username: string; token: string }> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
  const ignoreExisting = (err: unknown) => {
    if (!isAlreadyExists(err)) throw err;
  };
  await core.createNamespace({ body: { metadata: { name: OPERATORS_NAMESPACE } } }).catch(ignoreExisting);
  await core.createNamespacedServiceAccount({ namespace: OPERATORS_NAMESPACE, body: { metadata: { name } } }).catch(ignoreExisting);
  if (verbs.length) {
    const role = `unmix-test-operator-${name}`;
    await rbac
      .createClusterRole({
        body: { metadata: { name: role }, rules: [{ apiGroups: [SUPPORT_RESOURCE.group], resources: [SUPPORT_RESOURCE.resource], verbs }] },
      })
      .catch(ignoreExisting);
    await rbac
      .createClusterRoleBinding({
        body: {
          metadata: { name: role },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
          subjects: [{ kind: "ServiceAccount", name, namespace: OPERATORS_NAMESPACE }],
        },
      })
      .catch(ignoreExisting);
  }
  const tr = await core.createNamespacedServiceAccountToken({
    name,
    namespace: OPERATORS_NAMESPACE,
    body: { spec: { audiences: [o.audience ?? ADMIN_AUDIENCE], expirationSeconds: o.expirationSeconds ?? 3600 } },
  });
  return { username: `system:serviceaccount:${OPERATORS_NAMESPACE}:${name}`, token: tr.status?.token as string };
}
