/**
 * Every NATS subject Shoal uses, built in one place. `prefix` defaults to
 * `shoal` and lets several Shoal clusters share one NATS account.
 * Pool names and node ids are single subject tokens (see `isToken`).
 */
export const DEFAULT_PREFIX = 'shoal';

/** Queue group of the balancer replicas. */
export const BALANCER_QUEUE = 'shoal-balancers';

/** JetStream KV bucket holding operator settings (strategy, weights, targets) and health verdicts. */
export const SETTINGS_BUCKET = 'shoal_settings';

// ---- autoscaler (issue 8) ----
/** JetStream KV bucket whose max_age is the autoscaler leader's lease: one key, `leader`. */
export const AUTOSCALER_LEADER_BUCKET = 'shoal_autoscaler_leader';
/** Settings-bucket key of a pool's cluster-wide target (JSON `TargetRecord`). */
export const TARGET_KEY_PREFIX = 'target.';
/** Settings-bucket key of the last autoscaler leadership epoch (JSON number), bumped by compare-and-set. */
export const AUTOSCALER_EPOCH_KEY = 'autoscaler.epoch';
/** Settings-bucket key of a node's health verdict: `health.<nodeId>` (JSON HealthVerdict). */
export const HEALTH_KEY_PREFIX = 'health.';

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
    // ---- lost leases (issue 9): what holders listen to, one subscription per node they hold leases on.
    /** Announced by a node when it reclaims a lease or loses it on drain (a LeaseEvent). */
    leaseEvents: (nodeId: string) => `${prefix}.events.lease.${nodeId}`,
    /** Announced by a health-checker or balancer when a node is gone (a NodeEvent): every lease on it is lost. */
    nodeEvents: (nodeId: string) => `${prefix}.events.node.${nodeId}`,

    /** Operator commands handled by balancers (any replica answers). */
    adminStrategy: `${prefix}.admin.strategy`,
    adminWeight: `${prefix}.admin.weight`,
    adminStatus: `${prefix}.admin.status`,
    /** One balancer replica's own status (the shared `adminStatus` goes to any one replica). */
    adminStatusOf: (balancerId: string) => `${prefix}.admin.status.${balancerId}`,
    /** Every balancer replica answers (no queue group): collect the replies to list them all. */
    adminBalancers: `${prefix}.admin.balancers`,

    // ---- autoscaler (issue 8) ----
    /** Cluster-wide scale request of a pool; only the autoscaler leader subscribes. */
    adminScale: (pool: string) => `${prefix}.admin.scale.${pool}`,
    anyAdminScale: `${prefix}.admin.scale.*`,
    /** Desired pool-node replicas of a pool, published by the leader every decision tick. */
    autoscalerDesired: (pool: string) => `${prefix}.autoscaler.desired.${pool}`,
    anyAutoscalerDesired: `${prefix}.autoscaler.desired.*`,
    /** Request-reply: the leader answers with its status (leader, epoch, pools). */
    autoscalerStatus: `${prefix}.autoscaler.status`,
    // ---- health (issue 9): health-checker -> node probes, verdicts ----
    /** Answered at once from the node's event loop: a hung node fails it. */
    nodePing: (nodeId: string) => `${prefix}.node.${nodeId}.ping`,
    /** A real round trip through each pool (validate one idle resource), memory and backend health. */
    nodeProbe: (nodeId: string) => `${prefix}.node.${nodeId}.probe`,
    /** A node's health verdict (HealthVerdict, msgpack), also kept in the settings bucket at `health.<nodeId>`. */
    healthVerdict: (nodeId: string) => `${prefix}.health.verdict.${nodeId}`,
    /** Every node's verdict: balancers skip unhealthy nodes, the autoscaler counts their capacity out. */
    anyHealthVerdict: `${prefix}.health.verdict.*`,
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
