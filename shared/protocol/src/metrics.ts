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
  /** gauge {pool, kind, node}: 1 while the pool can make resources, 0 while its backend is down (reason in `shoal status`) */
  POOL_AVAILABLE: 'shoal_pool_available',
  /** counter {code}: errors answered on the wire */
  ERRORS_TOTAL: 'shoal_errors_total',
  /** node, balancer: counter {reason}: messages refused unanswered (reply subject not an inbox, forged heartbeat...) */
  REFUSED_TOTAL: 'shoal_refused_messages_total',
  /** balancer: counter {pool, node, result} */
  PLACEMENTS_TOTAL: 'shoal_balancer_placements_total',
  /** balancer: gauge {state=alive|suspect|draining|open} */
  BALANCER_NODES: 'shoal_balancer_nodes',
  /** balancer: histogram (ms) of a placement, end to end */
  PLACEMENT_LATENCY: 'shoal_balancer_placement_latency_ms',
  /** weaviate driver: counter {pool, node}: weaviate-client clients connected (pooled, repaired, or per call with VECTOR_STORE_USE_POOL=false) */
  WEAVIATE_CONNECTIONS_CREATED: 'shoal_weaviate_connections_created_total',
  /** weaviate driver: counter {pool, node}: clients closed */
  WEAVIATE_CONNECTIONS_CLOSED: 'shoal_weaviate_connections_closed_total',
  /** weaviate driver: counter {pool, node}: failed isLive/isReady probes (the connection is replaced) */
  WEAVIATE_HEALTH_CHECK_FAILURES: 'shoal_weaviate_health_check_failures_total',
  /** weaviate driver: counter {pool, node, op, result=success|bad_request|unavailable|error} */
  WEAVIATE_REQUESTS: 'shoal_weaviate_requests_total',
  /** claude-cli: gauge {pool, node, state=starting|idle|turn|clearing|dead}: sessions by their CLI state */
  CLAUDE_SESSIONS: 'shoal_claude_sessions',
  /** claude-cli: counter {pool, node, outcome=success|error|interrupted|crashed|cancelled|stalled|timeout}: user turns */
  CLAUDE_TURNS_TOTAL: 'shoal_claude_turns_total',
  /** claude-cli: histogram (ms) {pool, node}: a user turn, from writing the message to its `result` line */
  CLAUDE_TURN_LATENCY: 'shoal_claude_turn_latency_ms',
  /** claude-cli: counter {pool, node, type=input|output|cache_read|cache_creation}: tokens summed from `result` lines */
  CLAUDE_TOKENS_TOTAL: 'shoal_claude_tokens_total',
  /** claude-cli: counter {pool, node}: cost in USD of each turn (the difference of the running `total_cost_usd` of `result` lines) */
  CLAUDE_COST_USD_TOTAL: 'shoal_claude_cost_usd_total',
  /** claude-cli: counter {pool, node}: stdout lines that were not JSON (skipped) */
  CLAUDE_NON_JSON_LINES_TOTAL: 'shoal_claude_non_json_lines_total',
  /** claude-cli: counter {pool, node, stage=turn|control, action=interrupted|killed}: hang watchdog hits (`stall_timeout`) */
  CLAUDE_STALLS_TOTAL: 'shoal_claude_stalls_total',
  /** claude-cli: counter {pool, node, client}: cost in USD by the holder's client name (`holder.client`; at most 100 names per pool, then `_other`) */
  CLAUDE_CLIENT_COST_USD_TOTAL: 'shoal_claude_client_cost_usd_total',
  /** claude-cli: counter {pool, node, client, type=input|output|cache_read|cache_creation}: tokens by client name */
  CLAUDE_CLIENT_TOKENS_TOTAL: 'shoal_claude_client_tokens_total',
  /** claude-cli: counter {pool, node, status}: `api_retry` lines (status 429, 529, …, or `none`): the CLI retrying the API */
  CLAUDE_API_RETRIES_TOTAL: 'shoal_claude_api_retries_total',
} as const;

/** Latency buckets in milliseconds; the design's alert rules read le=10,50,100. */
export const LATENCY_BUCKETS_MS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];
