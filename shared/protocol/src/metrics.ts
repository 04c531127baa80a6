/**
 * Every Prometheus metric name Shoal exports, in one place. The
 * `aicli_session_pool_*` names are those of the session-pool design document so
 * its dashboards and alert rules work unchanged; Shoal adds `pool`, `kind` and
 * `node` labels.
 */
export const Metrics = {
  /** gauge {type=total|active|idle|ready|creating|waiting} */
  POOL_SIZE: 'aicli_session_pool_size',
  /** counter {operation=create|acquire|release|destroy|exec|renew|reset|validate, result=success|error|timeout|...} */
  OPERATIONS_TOTAL: 'aicli_session_pool_operations_total',
  /** gauge, share of acquires served by an already-used resource */
  REUSE_RATE: 'aicli_session_pool_reuse_rate',
  /** counter of acquires served by a reused resource */
  REUSE_COUNT_TOTAL: 'aicli_session_pool_reuse_count_total',
  /** histogram (ms) {operation=acquire|exec|create} */
  LATENCY_HISTOGRAM: 'aicli_session_pool_latency_histogram',
  /** gauge 0..1 {resource=memory|cpu} */
  RESOURCE_USAGE: 'aicli_session_pool_resource_usage',
  /** counter: leases reclaimed after their TTL ran out (a holder vanished) */
  LEASES_EXPIRED_TOTAL: 'shoal_leases_expired_total',
  /** gauge: requests being processed by the node */
  NODE_IN_FLIGHT: 'shoal_node_in_flight_requests',
  /** counter {code}: errors answered on the wire */
  ERRORS_TOTAL: 'shoal_errors_total',
  /** balancer: counter {pool, node, result} */
  PLACEMENTS_TOTAL: 'shoal_balancer_placements_total',
  /** balancer: gauge {state=alive|suspect|draining|open} */
  BALANCER_NODES: 'shoal_balancer_nodes',
  /** balancer: histogram (ms) of a placement, end to end */
  PLACEMENT_LATENCY: 'shoal_balancer_placement_latency_ms',
} as const;

/** Latency buckets in milliseconds; the design's alert rules read le=10,50,100. */
export const LATENCY_BUCKETS_MS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];
