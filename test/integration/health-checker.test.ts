import { expect } from 'chai';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import {
  encode, ErrorCodes, parseHeartbeat, parseHealthVerdict, PROTOCOL_VERSION, readReply, SETTINGS_BUCKET, ShoalError, subjects,
  type Heartbeat, type HealthVerdict, type Lease,
} from '@shoal/protocol';
import { silentLogger, transportError } from '@shoal/runtime';
import { Balancer } from '../../services/balancer/src/balancer.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * The health-checker as its own OS process, with pool-node and balancer
 * processes on a real nats-server. Nodes beat every 200 ms; their pool's
 * `load_balancing.health_check_interval` is 300 ms and `health_check.interval`
 * is unset, so the checker probes each node every 300 ms (one node says 60 s);
 * timeout 500 ms, failure_threshold 2, recovery_threshold 2.
 */
const s = subjects('shoal');
const POOL = 'synthetic';
const INTERVAL = 300;
const TIMEOUT = 500;
const FAILURES = 2;
/** What a loaded machine may add to a bound (meaning: it did not hang). */
const SLACK = 3000;

function nodeConfig(dir: string, name: string, o: { drainAfter?: string; extraPool?: string } = {}): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, `node:
  heartbeat_interval: 200ms
  drain_grace: 1s
health_check:
  timeout: ${TIMEOUT}ms
  failure_threshold: ${FAILURES}
  recovery_threshold: 2
  drain_after: ${o.drainAfter ?? '0'}
  checks:
    - type: ping
      endpoint: /health
    - type: response_time
      max_latency: 3s
    - type: memory_usage
      max_usage: 80%
pools:
  synthetic:
    driver: synthetic
    min_size: 2
    max_size: 6
    initial_size: 2
    options: { create_latency: 1ms, exec_latency: 1ms }
    load_balancing:
      health_check_interval: ${INTERVAL}ms
  broken:
    load_balancing:
      health_check_interval: ${INTERVAL}ms
    driver: synthetic
    min_size: 1
    max_size: 2
    initial_size: 1
    create: { retry_base: 100ms, retry_max: 200ms }
    options: { failure_rate: 1 }
${o.extraPool ?? ''}`);
  return file;
}

describe('health-checker (integration: checker, balancer and pool-node processes)', function () {
  this.timeout(120_000);
  let nats: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  let base: string;
  let balancer: Service;
  let checker: Service;
  const procs: Service[] = [];
  const verdicts: HealthVerdict[] = [];
  const heartbeats: Heartbeat[] = [];
  const ids = { a: 'hc-a', b: 'hc-b', fat: 'hc-fat', drainer: 'hc-drainer', slow: 'hc-slow' };

  const env = (o: Record<string, string> = {}) => ({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: base, SHOAL_LOG_LEVEL: 'info', ...o });

  async function node(id: string, o: Record<string, string> = {}) {
    // Five nodes start at once on a shared, loaded machine: give each longer than the helper's default.
    const n = startService('services/pool-node/dist/main.js', env({ SHOAL_HTTP_PORT: '0', SHOAL_NODE_ID: id, ...o }));
    procs.push(n);
    await n.waitFor((l) => l.msg === 'listening', 60_000);
    return n;
  }

  async function startBalancer(): Promise<Service> {
    const b = startService('services/balancer/dist/main.js', env({ SHOAL_HTTP_PORT: '0', SHOAL_BALANCER_ID: `bal-${procs.length}` }));
    procs.push(b);
    await b.waitFor((l) => l.msg === 'listening', 60_000);
    return b;
  }

  async function startChecker(id: string): Promise<Service> {
    const c = startService('services/health-checker/dist/main.js', env({ SHOAL_HTTP_PORT: '0', SHOAL_HEALTH_CHECKER_ID: id }));
    procs.push(c);
    await c.waitFor((l) => l.msg === 'listening', 60_000);
    return c;
  }

  async function waitVerdict(pred: (v: HealthVerdict) => boolean, timeoutMs: number, after = 0): Promise<HealthVerdict> {
    const until = Date.now() + timeoutMs;
    for (let i = after; ; ) {
      for (; i < verdicts.length; i++) if (pred(verdicts[i]!)) return verdicts[i]!;
      if (Date.now() > until) throw new Error(`no matching verdict within ${timeoutMs} ms; last: ${JSON.stringify(verdicts.slice(-3))}`);
      await sleep(20);
    }
  }

  async function acquire(timeoutMs = 2000): Promise<{ lease?: Lease; err?: ShoalError }> {
    const subject = s.poolAcquire(POOL);
    try {
      const m = await nc.request(subject, encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs, ttlMs: 5000 }), { timeout: timeoutMs + 500 });
      return { lease: readReply<Lease>(m.data) };
    } catch (err) {
      return { err: transportError(err, subject) };
    }
  }

  async function placements(n: number): Promise<Map<string, number>> {
    const by = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = await acquire();
      if (r.err) throw r.err;
      by.set(r.lease!.nodeId, (by.get(r.lease!.nodeId) ?? 0) + 1);
      readReply((await nc.request(s.leaseRelease(r.lease!.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: r.lease!.leaseId, secret: r.lease!.secret }), { timeout: 2000 })).data);
    }
    return by;
  }

  async function balancerStatus(): Promise<{ nodes: { nodeId: string; state: string; unhealthy: boolean; health: { healthy: boolean; reason?: string } | null }[] }> {
    return readReply((await nc.request(s.adminStatus, new Uint8Array(), { timeout: 2000 })).data);
  }

  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    nc.subscribe(s.anyHealthVerdict, { callback: (_e, m) => { try { verdicts.push(parseHealthVerdict(m.data)); } catch { /* counted as missing */ } } });
    nc.subscribe(s.anyHeartbeat, { callback: (_e, m) => { try { heartbeats.push(parseHeartbeat(m.data)); } catch { /* ignore */ } } });
    dir = mkdtempSync(join(tmpdir(), 'shoal-hc-'));
    base = nodeConfig(dir, 'base');
    // A 16 MB memory limit: a Node.js process's rss is several times that.
    const tiny = { SHOAL_NODE_MEMORY_LIMIT: '16MB' };
    await Promise.all([
      node(ids.a),
      node(ids.b),
      node(ids.fat, tiny),
      node(ids.drainer, { ...tiny, SHOAL_CONFIG: nodeConfig(dir, 'drainer', { drainAfter: '1500ms' }) }),
      node(ids.slow, { ...tiny, SHOAL_POOL_SYNTHETIC_LOAD_BALANCING_HEALTH_CHECK_INTERVAL: '60s', SHOAL_POOL_BROKEN_LOAD_BALANCING_HEALTH_CHECK_INTERVAL: '90s' }),
    ]);
    balancer = await startBalancer();
    checker = await startChecker('checker-1');
  });

  after(async () => {
    for (const p of procs) { p.proc.kill('SIGCONT'); await p.kill('SIGKILL'); }
    await nc?.close();
    await nats?.stop();
  });

  it('publishes verdicts in the contract shape, on the subject and in the settings bucket', async () => {
    const v = await waitVerdict((x) => x.nodeId === ids.a && x.healthy, 20_000);
    expect(v).to.include({ v: PROTOCOL_VERSION, nodeId: ids.a, healthy: true, checkerId: 'checker-1' });
    expect(v.at).to.be.a('number');
    expect(v.since).to.be.at.most(v.at);
    expect(v.checks.map((c) => c.type).sort()).to.deep.equal(['memory_usage', 'ping', 'response_time']);
    expect(v.pools[POOL]).to.deep.equal({ healthy: true });
    const kv = await nc.jetstream().views.kv(SETTINGS_BUCKET);
    const e = await kv.get(`health.${ids.a}`);
    const stored = JSON.parse(new TextDecoder().decode(e!.value)) as HealthVerdict;
    expect(stored).to.include({ nodeId: ids.a, healthy: true, checkerId: 'checker-1' });
    expect(Object.keys(stored).sort()).to.deep.equal(['at', 'checkerId', 'checks', 'healthy', 'nodeId', 'pools', 'since', 'v']);
  });

  it("a pool whose backend cannot make resources is marked in the verdict's pools, with the reason; the node stays healthy", async () => {
    const v = await waitVerdict((x) => x.nodeId === ids.b && x.pools.broken?.healthy === false, 20_000);
    expect(v.healthy).to.equal(true);
    expect(v.pools[POOL]).to.deep.equal({ healthy: true });
    expect(v.pools.broken!.reason).to.match(/synthetic create failure/);
    const st = await balancerStatus();
    const b = st.nodes.find((n) => n.nodeId === ids.b)!;
    expect(b.unhealthy).to.equal(false);
  });

  it('a node over max_usage of its memory limit is unhealthy, with the numbers, and the balancer places nothing on it', async () => {
    const v = await waitVerdict((x) => x.nodeId === ids.fat && !x.healthy, 20_000);
    const mem = v.checks.find((c) => c.type === 'memory_usage')!;
    expect(mem.ok).to.equal(false);
    expect(mem.limit).to.equal(80);
    expect(mem.value).to.be.greaterThan(80);
    expect(v.reason).to.match(/memory_usage: rss .* MB is .*% of the node's 16 MB limit > 80%/);
    // Heartbeating and alive, yet not placeable: the verdict is what keeps it out.
    const until = Date.now() + 10_000;
    for (;;) {
      const st = await balancerStatus();
      const fat = st.nodes.find((n) => n.nodeId === ids.fat);
      if (fat?.state === 'alive' && fat.unhealthy && fat.health?.healthy === false) break;
      if (Date.now() > until) throw new Error(`balancer does not show ${ids.fat} alive and unhealthy: ${JSON.stringify(fat)}`);
      await sleep(100);
    }
    const by = await placements(30);
    expect(by.get(ids.fat) ?? 0).to.equal(0);
    expect((by.get(ids.a) ?? 0) + (by.get(ids.b) ?? 0)).to.be.greaterThan(0);
    // drain_after 0: this one never drains itself.
    expect(heartbeats.filter((h) => h.nodeId === ids.fat).at(-1)!.draining).to.equal(false);
  });

  it('load_balancing.health_check_interval sets how often a node is probed when health_check.interval is unset', async () => {
    // The 300 ms nodes were judged long ago; the node whose pools say 60 s and 90 s (the shortest wins) has not been probed yet.
    await waitVerdict((x) => x.nodeId === ids.fat && !x.healthy, 20_000);
    await sleep(1500);
    expect(verdicts.filter((x) => x.nodeId === ids.slow)).to.have.length(0);
    expect(verdicts.filter((x) => x.nodeId === ids.fat).length).to.be.greaterThan(2);
    const port = (checker.logs.find((l) => l.msg === 'listening')!.httpPort) as number;
    const st = await (await fetch(`http://127.0.0.1:${port}/api/v1/health/status`)).json() as { nodes: { nodeId: string; intervalMs: number }[] };
    expect(st.nodes.find((n) => n.nodeId === ids.slow)!.intervalMs).to.equal(60_000);
    expect(st.nodes.find((n) => n.nodeId === ids.a)!.intervalMs).to.equal(INTERVAL);
  });

  it('a node unhealthy for health_check.drain_after drains itself', async () => {
    const v = await waitVerdict((x) => x.nodeId === ids.drainer && !x.healthy, 20_000);
    const seenAt = Date.now();
    const until = seenAt + 1500 + 10_000;
    for (;;) {
      const hb = heartbeats.filter((h) => h.nodeId === ids.drainer).at(-1);
      if (hb?.draining) break;
      if (Date.now() > until) throw new Error('the node did not drain itself');
      await sleep(50);
    }
    // Not before it had been unhealthy for drain_after (by the verdict's own clock, give or take a beat).
    expect(Date.now() - v.at).to.be.at.least(1500 - 250);
    const drainer = procs.find((p) => p.logs.some((l) => l.msg === 'listening' && l.nodeId === ids.drainer))!;
    await drainer.waitFor((l) => l.msg === 'draining itself', 1000);
  });

  it('a SIGSTOPped node is unhealthy within interval × failure_threshold + timeout; after SIGCONT healthy again after recovery_threshold good rounds', async () => {
    const a = procs.find((p) => p.logs.some((l) => l.msg === 'listening' && l.nodeId === ids.a))!;
    await waitVerdict((x) => x.nodeId === ids.a && x.healthy, 20_000);
    const mark = verdicts.length;
    const stoppedAt = Date.now();
    a.proc.kill('SIGSTOP');
    const down = await waitVerdict((x) => x.nodeId === ids.a && !x.healthy, INTERVAL * FAILURES + TIMEOUT + SLACK, mark);
    const tookMs = Date.now() - stoppedAt;
    if (process.env.SHOAL_TEST_FIGURES) console.log(JSON.stringify({ figure: 'unhealthy_after_sigstop_ms', ms: tookMs, bound: INTERVAL * FAILURES + TIMEOUT }));
    expect(tookMs, 'time to the unhealthy verdict').to.be.below(INTERVAL * FAILURES + TIMEOUT + SLACK);
    expect(down.checks.find((c) => c.type === 'ping')).to.deep.include({ ok: false });
    // The reason names a failed check; ping and the probe's round trip both fail on a hung node, in either order.
    expect(down.reason).to.match(/^(ping|response_time): /);
    // Placements go to the others meanwhile.
    const by = await placements(10);
    expect(by.get(ids.a) ?? 0).to.equal(0);

    const mark2 = verdicts.length;
    const contAt = Date.now();
    a.proc.kill('SIGCONT');
    const up = await waitVerdict((x) => x.nodeId === ids.a && x.healthy, 15_000, mark2);
    if (process.env.SHOAL_TEST_FIGURES) console.log(JSON.stringify({ figure: 'healthy_after_sigcont_ms', ms: Date.now() - contAt }));
    expect(up.since).to.be.at.least(contAt - 1000);
    // Before it: at least one round where the ping answered yet the node stayed unhealthy (recovery_threshold 2).
    const between = verdicts.slice(mark2, verdicts.indexOf(up)).filter((x) => x.nodeId === ids.a);
    expect(between.some((x) => !x.healthy && x.checks.find((c) => c.type === 'ping')?.ok === true), JSON.stringify(between.map((x) => [x.healthy, x.checks]))).to.equal(true);
    // And it is placeable again.
    const until = Date.now() + 10_000;
    for (;;) {
      const by2 = await placements(12);
      if ((by2.get(ids.a) ?? 0) > 0) break;
      if (Date.now() > until) throw new Error(`${ids.a} got no placements after recovering`);
    }
  });

  it('a restarted balancer knows the verdicts at once, from the settings bucket (no checker running)', async () => {
    await checker.kill('SIGTERM');
    await balancer.kill('SIGTERM');
    balancer = await startBalancer();
    // No checker publishes now: only the bucket can have told the new balancer.
    const st = await balancerStatus();
    const fat = st.nodes.find((n) => n.nodeId === ids.fat)!;
    expect(fat.unhealthy).to.equal(true);
    expect(fat.health?.reason).to.match(/memory_usage/);
    const by = await placements(20);
    expect(by.get(ids.fat) ?? 0).to.equal(0);
  });

  it('two checkers: one stored verdict per node, unhealthy while either says so', async () => {
    const c1 = await startChecker('checker-x');
    const c2 = await startChecker('checker-y');
    const mark = verdicts.length;
    await waitVerdict((x) => x.nodeId === ids.fat && !x.healthy && x.checkerId === 'checker-x', 20_000, mark);
    await waitVerdict((x) => x.nodeId === ids.fat && !x.healthy && x.checkerId === 'checker-y', 20_000, mark);
    const kv = await nc.jetstream().views.kv(SETTINGS_BUCKET);
    const stored = JSON.parse(new TextDecoder().decode((await kv.get(`health.${ids.fat}`))!.value)) as HealthVerdict;
    expect(stored.healthy).to.equal(false);
    expect(['checker-x', 'checker-y']).to.include(stored.checkerId);
    // A healthy node: both agree, nothing flips (healthy verdicts are written on change only).
    await sleep(1000);
    expect(verdicts.slice(mark).filter((x) => x.nodeId === ids.b && !x.healthy)).to.have.length(0);
    const b = JSON.parse(new TextDecoder().decode((await kv.get(`health.${ids.b}`))!.value)) as HealthVerdict;
    expect(b.healthy).to.equal(true);
    await c1.kill('SIGTERM');
    await c2.kill('SIGTERM');
  });

  it('health_check.interval overrides the pools\' interval; enabled: false probes nothing', async () => {
    const fixed = startService('services/health-checker/dist/main.js', env({ SHOAL_HTTP_PORT: '0', SHOAL_HEALTH_CHECKER_ID: 'checker-fixed', SHOAL_HEALTH_CHECK_INTERVAL: '250ms' }));
    const off = startService('services/health-checker/dist/main.js', env({ SHOAL_HTTP_PORT: '0', SHOAL_HEALTH_CHECKER_ID: 'checker-off', SHOAL_HEALTH_CHECK_ENABLED: 'false' }));
    procs.push(fixed, off);
    const [lf, lo] = await Promise.all([fixed.waitFor((l) => l.msg === 'listening'), off.waitFor((l) => l.msg === 'listening')]);
    // The node whose pools say 60 s is probed every 250 ms by this one: it gets a verdict.
    const mark = verdicts.length;
    await waitVerdict((x) => x.nodeId === ids.slow && x.checkerId === 'checker-fixed', 20_000, mark);
    const status = async (port: unknown) => (await (await fetch(`http://127.0.0.1:${port as number}/api/v1/health/status`)).json()) as { nodes: { nodeId: string; intervalMs: number }[] };
    expect((await status(lf.httpPort)).nodes.find((n) => n.nodeId === ids.slow)!.intervalMs).to.equal(250);
    await sleep(1000);
    expect((await status(lo.httpPort)).nodes).to.have.length(0);
    expect(verdicts.filter((x) => x.checkerId === 'checker-off')).to.have.length(0);
    await fixed.kill('SIGTERM');
    await off.kill('SIGTERM');
  });
});

describe('load_balancing.circuit_breaker_enabled (integration: balancer actor, pool-node process)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let nc: NatsConnection;
  let balancer: Balancer;
  let node: Service;

  before(async () => {
    nats = await startNatsServer({ jetstream: false });
    nc = await connect({ servers: nats.url });
    const dir = mkdtempSync(join(tmpdir(), 'shoal-cb-'));
    // Two pools on one node: the breaker on for one, off for the other.
    const file = nodeConfig(dir, 'cb', { extraPool: `  nobreak:
    driver: synthetic
    min_size: 1
    max_size: 4
    initial_size: 1
    load_balancing:
      circuit_breaker_enabled: false
` });
    node = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: 'cb-node' });
    balancer = new Balancer(nc, silentLogger, {
      prefix: 'shoal', strategy: 'round_robin', performanceWeights: { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 },
      suspectAfterIntervals: 3, goneAfterIntervals: 5, circuitFailureThreshold: 2, circuitCooldownMs: 60_000,
    });
    await balancer.start();
  });

  after(async () => {
    await balancer?.stop(100);
    await node?.kill('SIGKILL');
    await nc?.close();
    await nats?.stop();
  });

  const acquire = async (pool: string) => {
    const m = await nc.request(s.poolAcquire(pool), encode({ v: PROTOCOL_VERSION, pool, timeoutMs: 2000, ttlMs: 5000 }), { timeout: 3000 });
    try {
      return { lease: readReply<Lease>(m.data) };
    } catch (err) {
      return { err: err as ShoalError };
    }
  };

  it('an open circuit keeps a node out of a pool with the breaker on, not out of a pool with it off', async () => {
    expect((await acquire(POOL)).lease?.nodeId).to.equal('cb-node');
    const now = Date.now();
    balancer.circuit.failure('cb-node', now);
    balancer.circuit.failure('cb-node', now);
    expect(balancer.circuit.state('cb-node', Date.now())).to.equal('open');
    const on = await acquire(POOL);
    expect(on.err?.code).to.equal(ErrorCodes.NO_NODES);
    expect(on.err?.message).to.match(/circuit open/);
    const off = await acquire('nobreak');
    expect(off.lease?.nodeId).to.equal('cb-node');
  });
});
