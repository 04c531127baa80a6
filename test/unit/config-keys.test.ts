import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { EXAMPLE } from '../helpers/config.js';
import { ROOT } from '../helpers/procs.js';

/**
 * "A setting that does nothing is a bug": every key of the example config
 * (config/session-pool.yaml) must name the test that proves it changes
 * behaviour, or be listed as pending with the issue that makes it live. A
 * key without an entry fails here, and so does an entry whose test is not
 * in the named file (a renamed test would otherwise leave the table lying).
 *
 * Keys are normalised: `session_pool.X` and `pools.<name>.X` are the pool
 * key `pool.X`; `pools.<name>.options.Y` is `options.<driver>.Y`.
 */
type Proof = { file: string; test: string } | { pending: string };

const PROOFS: Record<string, Proof[]> = {
  'nats.url': [{ file: 'test/integration/runtime-nats.test.ts', test: 'connects with user and password' }],
  'jetstream.storage': [{ file: 'test/integration/kv-bucket.test.ts', test: 'storage: memory creates a memory stream' }, { file: 'test/integration/jetstream-buckets.test.ts', test: 'jetstream.storage: memory (file) and SHOAL_JETSTREAM_REPLICAS=2 (env) apply to every shoal_* bucket' }, { file: 'test/unit/scaleout-config.test.ts', test: 'jetstream: replicas unset (auto) by default, file storage; SHOAL_JETSTREAM_* set them' }],
  'node.prefix': [{ file: 'test/integration/node-settings.test.ts', test: 'node.prefix: a node under another prefix serves clients of that prefix only' }],
  'node.http_host': [{ file: 'test/integration/node-settings.test.ts', test: 'node.http_host: the status server binds that address only' }],
  'node.http_port': [{ file: 'test/integration/pool-node.test.ts', test: 'publishes heartbeats with the pool numbers, serves /metrics and /healthz' }],
  'node.heartbeat_interval': [{ file: 'test/unit/membership.test.ts', test: 'is suspect after 3 silent intervals and gone after 5' }],
  'node.drain_grace': [{ file: 'test/integration/pool-node.test.ts', test: 'drains on SIGTERM: new acquires refused, the held lease finishes' }],
  'node.max_concurrent_requests': [{ file: 'test/integration/node-settings.test.ts', test: 'node.max_concurrent_requests: node-wide, beyond it POOL_BUSY naming the node, while the pool limit is far away' }],
  'node.log_level': [{ file: 'test/integration/node-settings.test.ts', test: 'node.log_level: debug shows debug lines; warn shows no info lines (and the node still serves)' }],
  'autoscaler.lease_ttl': [{ file: 'test/integration/autoscaler.test.ts', test: 'autoscaler.lease_ttl is the leader lease: a follower takes over no sooner' }],
  'autoscaler.interval': [{ file: 'test/integration/autoscaler.test.ts', test: 'desired pool-nodes published once per tick' }],
  'balancer.suspect_after': [{ file: 'test/unit/membership.test.ts', test: 'is suspect after 3 silent intervals and gone after 5' }],
  'balancer.gone_after': [{ file: 'test/unit/membership.test.ts', test: 'is suspect after 3 silent intervals and gone after 5' }],
  'balancer.circuit_failure_threshold': [{ file: 'test/integration/balancer-actor.test.ts', test: 'opens the circuit of a node that keeps failing and stops trying it' }],
  'balancer.circuit_cooldown': [{ file: 'test/unit/circuit.test.ts', test: 'refuses while open, then lets exactly one probe through after the cooldown' }],
  'balancer.performance_weights.latency': [{ file: 'test/unit/strategies.test.ts', test: 'honours its weights: with only resource weighted, latency does not matter' }],
  'balancer.performance_weights.throughput': [{ file: 'test/unit/strategies.test.ts', test: 'uses the design weights by default and accepts overrides' }],
  'balancer.performance_weights.error_rate': [{ file: 'test/unit/strategies.test.ts', test: 'prefers low latency and low error rate' }],
  'balancer.performance_weights.resource': [{ file: 'test/unit/strategies.test.ts', test: 'honours its weights: with only resource weighted, latency does not matter' }],

  'health_check.enabled': [{ file: 'test/integration/health-checker.test.ts', test: 'interval; enabled: false probes nothing' }],
  'health_check.timeout': [{ file: 'test/integration/health-checker.test.ts', test: 'a SIGSTOPped node is unhealthy within interval × failure_threshold + timeout' }],
  'health_check.failure_threshold': [{ file: 'test/unit/health-verdict.test.ts', test: 'ping: unhealthy only after failure_threshold consecutive failures, with the reason' }, { file: 'test/integration/health-checker.test.ts', test: 'a SIGSTOPped node is unhealthy within interval × failure_threshold + timeout' }],
  'health_check.recovery_threshold': [{ file: 'test/unit/health-verdict.test.ts', test: 'recovery: healthy again only after recovery_threshold consecutive good rounds; since marks each change' }],
  'health_check.drain_after': [{ file: 'test/integration/health-checker.test.ts', test: 'a node unhealthy for health_check.drain_after drains itself' }, { file: 'test/unit/node-health.test.ts', test: 'drain_after 0: never drains' }],
  'health_check.checks': [{ file: 'test/unit/health-verdict.test.ts', test: 'only the configured checks are judged' }, { file: 'test/unit/health-verdict.test.ts', test: 'response_time: a probe round trip over max_latency fails, with the numbers' }, { file: 'test/unit/health-verdict.test.ts', test: 'memory_usage: rss over max_usage of the node limit fails, as a percentage' }],
  'pool.driver': [{ file: 'test/integration/claude.test.ts', test: 'with its command not found, the pool reports itself unavailable' }],
  'pool.min_size': [{ file: 'test/unit/pool.test.ts', test: 'scales up, down and to a target within min and max' }],
  'pool.max_size': [{ file: 'test/integration/pool-node.test.ts', test: 'serves acquires beyond max in FIFO order' }],
  'pool.initial_size': [{ file: 'test/unit/pool.test.ts', test: 'warms up to the initial size in parallel' }],
  'pool.max_waiting_clients': [{ file: 'test/unit/pool.test.ts', test: 'refuses beyond max_waiting_clients with POOL_EXHAUSTED' }],
  'pool.acquire_timeout': [{ file: 'test/integration/operator-settings.test.ts', test: 'acquire_timeout applies when the client gives no deadline' }],
  'pool.lease_ttl': [{ file: 'test/integration/pool-node.test.ts', test: 'reclaims the lease of a client process SIGKILLed while holding it, after the TTL' }],
  'pool.weight': [{ file: 'test/integration/operator-settings.test.ts', test: 'a runtime override wins, is shown with who and when' }],
  'pool.auto_scaling.enabled': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'enabled: false never acts, whatever the load' }, { file: 'test/integration/autoscaler.test.ts', test: 'enabled: false (AICLI_SESSION_POOL_AUTO_SCALING=false) leaves the pool alone under load' }],
  'pool.auto_scaling.scale_up_threshold': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'grows by scale_up_increment at or above scale_up_threshold' }, { file: 'test/integration/autoscaler.test.ts', test: 'load above scale_up_threshold grows the pool by the increment' }],
  'pool.auto_scaling.scale_down_threshold': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'shrinks by scale_down_increment at or below scale_down_threshold; holds between the thresholds (hysteresis band)' }],
  'pool.auto_scaling.scale_up_increment': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'grows by scale_up_increment at or above scale_up_threshold' }, { file: 'test/integration/autoscaler.test.ts', test: 'load above scale_up_threshold grows the pool by the increment' }],
  'pool.auto_scaling.scale_down_increment': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'shrinks by scale_down_increment at or below scale_down_threshold; holds between the thresholds (hysteresis band)' }],
  'pool.auto_scaling.cooldown_period': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'cooldown_period spaces actions: sustained load grows the pool once per cooldown' }, { file: 'test/integration/autoscaler.test.ts', test: 'no more often than the cooldown' }],
  'pool.auto_scaling.stabilization_window': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'stabilization window: a scale-down waits until every tick of the window asked for one' }],
  'pool.auto_scaling.scale_down_to_fit': [
    { file: 'test/unit/autoscaler-spread.test.ts', test: 'hands each auto_scaling key of a pool (its own block or the inherited session_pool one) to the decisions; an undescribed pool is off' },
    { file: 'test/unit/autoscaler-decide.test.ts', test: 'scale_down_to_fit: far below the threshold a stabilized scale-down goes at once to the size at which the peak demand of the window reads mid-band; off, one increment per cooldown' },
  ],
  'pool.auto_scaling.predictive': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'predictive: on a ramp it creates ahead of demand, one create latency plus a tick ahead; reactive waits for the threshold' }],
  'pool.scaling_policies': [{ file: 'test/unit/autoscaler-decide.test.ts', test: 'acts only after the condition held for its duration; a shorter spike does nothing' }, { file: 'test/unit/autoscaler-decide.test.ts', test: 'a policy with no duration acts at once; up wins over down, largest increment' }, { file: 'test/unit/autoscaler-spread.test.ts', test: 'reads scaling_policies in the design' }],
  'pool.load_balancing.strategy': [
    { file: 'test/integration/operator-settings.test.ts', test: 'strategy from AICLI_SESSION_POOL_LOAD_BALANCING, not balancer.strategy' },
    { file: 'test/integration/operator-settings.test.ts', test: '`settings reset` returns to the config' },
  ],
  'pool.load_balancing.health_check_interval': [{ file: 'test/integration/health-checker.test.ts', test: 'load_balancing.health_check_interval sets how often a node is probed when health_check.interval is unset' }, { file: 'test/integration/fail-fast.test.ts', test: 'is served within one health interval of its return' }],
  'pool.load_balancing.circuit_breaker_enabled': [{ file: 'test/integration/health-checker.test.ts', test: 'an open circuit keeps a node out of a pool with the breaker on, not out of a pool with it off' }],
  'pool.session_management.enable_reuse': [{ file: 'test/unit/pool.test.ts', test: 'destroys on release with destroy, on reuse disabled, and after max reuse count' }],
  'pool.session_management.idle_timeout': [{ file: 'test/unit/pool.test.ts', test: 'shrinks idle resources after the idle timeout' }],
  'pool.session_management.max_lifetime': [{ file: 'test/unit/pool.test.ts', test: 'expires resources at max lifetime with jitter' }],
  'pool.session_management.cleanup_interval': [{ file: 'test/unit/pool.test.ts', test: 'validates idle resources in the cleanup' }],
  'pool.session_management.lifetime_jitter': [{ file: 'test/unit/pool.test.ts', test: 'expires resources at max lifetime with jitter, so they do not all go at once' }],
  'pool.session_management.max_reuse_count': [{ file: 'test/integration/pool-node.test.ts', test: 'replaces a resource after max reuse' }],
  'pool.session_management.context_reset': [{ file: 'test/unit/pool.test.ts', test: 'resets on return when context_reset is on' }],
  'pool.session_management.validate_on_return': [{ file: 'test/unit/pool.test.ts', test: 'validates unless validated within the skip window' }],
  'pool.session_management.validate_skip_window': [{ file: 'test/unit/pool.test.ts', test: 'validates unless validated within the skip window' }],
  'pool.session_management.max_parked': [{ file: 'test/unit/pool.test.ts', test: 'max_parked: parking one more evicts the oldest' }, { file: 'test/unit/pool.test.ts', test: 'max_parked 0 turns parking off: a park release is an ordinary release' }],
  'pool.session_management.park_ttl': [{ file: 'test/unit/pool.test.ts', test: 'park_ttl: the cleanup evicts an unclaimed one' }],
  'pool.resource_limits.max_memory_per_session': [{ file: 'test/unit/pool.test.ts', test: 'destroys a resource over max_memory_per_session on return' }],
  'pool.resource_limits.max_total_memory': [{ file: 'test/unit/claude-total-memory.test.ts', test: 'destroys the largest idle resources until the total is under the limit' }],
  'pool.resource_limits.max_concurrent_requests': [{ file: 'test/integration/pool-node.test.ts', test: 'refuses work beyond max_concurrent_requests with POOL_BUSY' }],
  'pool.resource_limits.max_payload': [{ file: 'test/integration/pool-node.test.ts', test: 'answers bad input with typed errors and keeps serving' }],
  'pool.create.timeout': [{ file: 'test/unit/pool.test.ts', test: 'times out a create that hangs' }],
  'pool.create.retry_base': [{ file: 'test/integration/pool-node.test.ts', test: 'hands failing creates to the waiters as a retryable POOL_UNAVAILABLE (the pool is down: fail fast) and backs off (attempts counted)' }, { file: 'test/unit/pool.test.ts', test: 'hands a create error to its waiter and backs off instead of spinning' }],
  'pool.create.retry_max': [{ file: 'test/integration/pool-node.test.ts', test: 'hands failing creates to the waiters as a retryable POOL_UNAVAILABLE (the pool is down: fail fast) and backs off (attempts counted)' }, { file: 'test/integration/fail-fast.test.ts', test: 'a pool started while Weaviate is down (creates failing, backoff grown towards retry_max 30 s)' }],

  'options.synthetic.failure_rate': [{ file: 'test/integration/pool-node.test.ts', test: 'hands failing creates to the waiters as a retryable POOL_UNAVAILABLE (the pool is down: fail fast) and backs off (attempts counted)' }],
  'options.synthetic.create_latency': [{ file: 'test/unit/synthetic-driver.test.ts', test: 'create_latency and exec_latency (duration strings, as in the example config) delay create and every exec by that much' }],
  'options.synthetic.exec_latency': [{ file: 'test/unit/synthetic-driver.test.ts', test: 'create_latency and exec_latency (duration strings, as in the example config) delay create and every exec by that much' }],
  'options.claude-cli.command': [{ file: 'test/integration/claude.test.ts', test: 'with its command not found, the pool reports itself unavailable' }],
  'options.claude-cli.include_partial_messages': [{ file: 'test/unit/claude-options.test.ts', test: 'maps every typed option to its flag, in a stable order' }],
  'options.claude-cli.permission_mode': [{ file: 'test/unit/claude-options.test.ts', test: 'maps every typed option to its flag, in a stable order' }],
  'options.claude-cli.turn_timeout': [{ file: 'test/integration/claude-workloads.test.ts', test: 'the pool default for send is turn_timeout; other ops have none' }],
  'options.claude-cli.stall_timeout': [{ file: 'test/integration/claude-workloads.test.ts', test: 'a CLI that stops writing mid-turn: SESSION_STALLED (retryable, last lines) within stall_timeout + 1 s' }, { file: 'test/integration/claude-workloads.test.ts', test: 'stall_timeout 0 turns the watchdog off' }],
  'options.claude-cli.private_config': [{ file: 'test/integration/claude-workloads.test.ts', test: 'each session has its own HOME and config dir; the next holder cannot read the previous holder' }, { file: 'test/integration/claude-workloads.test.ts', test: 'private_config: false shares the node' }],
  'options.weaviate.host': [{ file: 'test/integration/weaviate.test.ts', test: 'Weaviate stopped then restarted' }],
  'options.weaviate.port': [{ file: 'test/integration/weaviate.test.ts', test: 'Weaviate stopped then restarted' }],
  'options.weaviate.grpc_port': [{ file: 'test/integration/weaviate.test.ts', test: 'Weaviate stopped then restarted' }],
  'options.weaviate.use_pool': [{ file: 'test/integration/weaviate.test.ts', test: 'VECTOR_STORE_USE_POOL=false: the same ops on a fresh client per call' }],
  'options.weaviate.health_check_interval': [{ file: 'test/unit/weaviate-driver.test.ts', test: 'health check: no timer of its own; the pool validates at health_check_interval, a failing probe is counted and logged' }],
};

/** Every leaf key of the example config, normalised as above. */
export function exampleKeys(file = EXAMPLE): string[] {
  const doc = parse(readFileSync(file, 'utf8'), { merge: true }) as Record<string, unknown>;
  const pools = (doc.pools ?? {}) as Record<string, { driver?: string }>;
  const out = new Set<string>();
  const walk = (o: Record<string, unknown>, path: string): void => {
    for (const [k, v] of Object.entries(o)) {
      const p = path ? `${path}.${k}` : k;
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, p);
      else out.add(p);
    }
  };
  walk(doc, '');
  return [...new Set([...out].map((k) => {
    let m = /^pools\.([^.]+)\.options\.(.+)$/.exec(k);
    if (m) return `options.${pools[m[1]!]?.driver}.${m[2]}`;
    m = /^(?:pools\.[^.]+|session_pool)\.(.+)$/.exec(k);
    return m ? `pool.${m[1]}` : k;
  }))].sort();
}

describe('every key of config/session-pool.yaml names the test that proves it', () => {
  const keys = exampleKeys();

  it('has an entry for every key of the example (proof, or pending with its issue)', () => {
    expect(keys.length).to.be.greaterThan(40);
    const missing = keys.filter((k) => !Object.hasOwn(PROOFS, k));
    expect(missing, 'keys of config/session-pool.yaml with no proof and no pending entry').to.deep.equal([]);
  });

  it('every named test exists in its file', () => {
    const wrong: string[] = [];
    for (const [key, proofs] of Object.entries(PROOFS)) {
      for (const p of proofs) {
        if ('pending' in p) continue;
        const path = join(ROOT, p.file);
        if (!existsSync(path) || !readFileSync(path, 'utf8').includes(p.test)) wrong.push(`${key}: ${p.file}: "${p.test}"`);
      }
    }
    expect(wrong).to.deep.equal([]);
  });

  it('lists what is still pending (printed, so the gap stays visible)', () => {
    const pending = Object.entries(PROOFS).filter(([k, ps]) => keys.includes(k) && ps.some((p) => 'pending' in p));
    for (const [k, ps] of pending) process.stdout.write(`      pending: ${k} — ${ps.map((p) => ('pending' in p ? p.pending : '')).join('; ')}\n`);
    expect(pending.length).to.be.below(keys.length);
  });
});
