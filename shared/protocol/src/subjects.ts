/**
 * Every NATS subject Shoal uses, built in one place. `prefix` defaults to
 * `shoal` and lets several Shoal clusters share one NATS account.
 * Pool names and node ids are single subject tokens (see `isToken`).
 */
export const DEFAULT_PREFIX = 'shoal';

/** Queue group of the balancer replicas. */
export const BALANCER_QUEUE = 'shoal-balancers';

/** JetStream KV bucket holding operator settings (strategy, weights, targets). */
export const SETTINGS_BUCKET = 'shoal_settings';

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** A pool name or node id must be one subject token: no dots, spaces or wildcards. */
export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

export function subjects(prefix: string = DEFAULT_PREFIX) {
  return {
    prefix,
    /** Balancers' queue group: place an acquire on a node. */
    poolAcquire: (pool: string) => `${prefix}.${pool}.acquire`,
    /** Balancers' queue group: one-shot exec on some node. */
    poolExec: (pool: string) => `${prefix}.${pool}.exec`,
    /** Wildcards the balancers subscribe to. */
    anyPoolAcquire: `${prefix}.*.acquire`,
    anyPoolExec: `${prefix}.*.exec`,

    /** A node's own subjects. */
    nodeAcquire: (nodeId: string) => `${prefix}.node.${nodeId}.acquire`,
    nodeExec: (nodeId: string) => `${prefix}.node.${nodeId}.exec`,
    leaseExec: (nodeId: string) => `${prefix}.node.${nodeId}.lease.exec`,
    leaseRenew: (nodeId: string) => `${prefix}.node.${nodeId}.lease.renew`,
    leaseRelease: (nodeId: string) => `${prefix}.node.${nodeId}.lease.release`,
    nodeScale: (nodeId: string) => `${prefix}.node.${nodeId}.scale`,
    nodeDrain: (nodeId: string) => `${prefix}.node.${nodeId}.drain`,
    nodeStatus: (nodeId: string) => `${prefix}.node.${nodeId}.status`,
    nodeAll: (nodeId: string) => `${prefix}.node.${nodeId}.>`,

    /** Heartbeats, one subject per node. */
    heartbeat: (nodeId: string) => `${prefix}.hb.${nodeId}`,
    anyHeartbeat: `${prefix}.hb.*`,
    /** Announced by a node when it reclaims a lease or loses it on drain. */
    leaseEvents: (nodeId: string) => `${prefix}.events.lease.${nodeId}`,

    /** Operator commands handled by balancers (any replica answers). */
    adminStrategy: `${prefix}.admin.strategy`,
    adminWeight: `${prefix}.admin.weight`,
    adminStatus: `${prefix}.admin.status`,
    /** One balancer replica's own status (the shared `adminStatus` goes to any one replica). */
    adminStatusOf: (balancerId: string) => `${prefix}.admin.status.${balancerId}`,
    /** Every balancer replica answers (no queue group): collect the replies to list them all. */
    adminBalancers: `${prefix}.admin.balancers`,

    // ---- operator's view (issue 13) ----
    /** Runtime settings back to the config (any replica answers; all follow the KV bucket). */
    adminSettingsReset: `${prefix}.admin.settings.reset`,
    /** Leave draining (admin -> node). */
    nodeUndrain: (nodeId: string) => `${prefix}.node.${nodeId}.undrain`,
  };
}

export type Subjects = ReturnType<typeof subjects>;

/** Extract the pool token from `<prefix>.<pool>.acquire|exec`. */
export function poolFromSubject(subject: string, prefix: string = DEFAULT_PREFIX): string | undefined {
  const rest = subject.startsWith(prefix + '.') ? subject.slice(prefix.length + 1) : undefined;
  if (!rest) return undefined;
  const dot = rest.indexOf('.');
  return dot > 0 ? rest.slice(0, dot) : undefined;
}
