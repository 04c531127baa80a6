import { expect } from 'chai';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { connect, PoolTimeoutError, type Client, type Lease } from '@shoal/client';
import { encode, parseHeartbeat, PROTOCOL_VERSION, readReply, ShoalError, subjects, type Heartbeat } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { startPoolNode, startService, sleep, type Service } from '../helpers/procs.js';
import { writeConfig } from '../helpers/cluster.js';

const s = subjects('shoal');

async function rawRequest(nc: NatsConnection, subject: string, data: Uint8Array): Promise<ShoalError | unknown> {
  const m = await nc.request(subject, data, { timeout: 3000 });
  try { return readReply(m.data); } catch (err) { return err; }
}

describe('pool-node (integration: real nats-server, node as its own process)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let client: Client;
  let nc: NatsConnection;
  const services: Service[] = [];

  before(async () => {
    nats = await startNatsServer();
    client = await connect({ servers: [nats.url], name: 'it' });
    nc = await natsConnect({ servers: nats.url });
  });
  after(async () => {
    await client?.close();
    await nc?.close();
    await nats?.stop();
  });
  afterEach(async () => { await Promise.all(services.splice(0).map((x) => x.kill('SIGKILL'))); });

  type PoolStatus = { total: number; active: number; idle: number; waiting: number };
  const poolStatus = async (nodeId: string) => (await call<{ pools: Record<string, PoolStatus> }>(nc, s.nodeStatus(nodeId), {}, 3000)).pools.synthetic!;
  /** Poll the node's status until `cond` holds (a generous deadline: it did not hang). */
  async function untilStatus(nodeId: string, cond: (p: PoolStatus) => boolean, ms = 10_000): Promise<PoolStatus> {
    const end = Date.now() + ms;
    for (;;) {
      const p = await poolStatus(nodeId);
      if (cond(p)) return p;
      if (Date.now() > end) throw new Error(`pool status never matched: ${JSON.stringify(p)}`);
      await sleep(20);
    }
  }

  async function node(pool: Record<string, unknown>, env: Record<string, string> = {}) {
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig(pool), ...env });
    services.push(n);
    return n;
  }

  it('serves acquires beyond max in FIFO order, and times out with POOL_TIMEOUT carrying the numbers', async () => {
    const n = await node({ min_size: 0, max_size: 1, initial_size: 0 });
    const first = await client.acquire('synthetic', { nodeId: n.nodeId });
    const order: number[] = [];
    const got: Lease[] = [];
    const waiters: Promise<void>[] = [];
    for (const i of [0, 1, 2]) {
      // Enqueue in a known order: the next one only once this one waits at the node.
      waiters.push((async () => {
        const l = await client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 10_000 });
        order.push(i); got.push(l);
      })());
      await untilStatus(n.nodeId, (p) => p.waiting === i + 1);
    }
    await first.release();
    for (let i = 0; i < 3; i++) {
      while (got.length <= i) await sleep(10);
      await got[i]!.release();
    }
    await Promise.all(waiters);
    expect(order).to.deep.equal([0, 1, 2]);

    const held = await client.acquire('synthetic', { nodeId: n.nodeId });
    const t0 = Date.now();
    const err = await client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 400 }).catch((e) => e);
    expect(err).to.be.instanceOf(PoolTimeoutError);
    expect(err.code).to.equal('POOL_TIMEOUT');
    expect(err.pool).to.include({ total: 1, active: 1, idle: 0, waiting: 1 });
    // Not before its deadline; after it only by a loaded machine's slack (it did not hang).
    expect(Date.now() - t0).to.be.within(300, 10_000);
    await held.release();
  });

  it('reclaims the lease of a client process SIGKILLed while holding it, after the TTL', async () => {
    const n = await node({ min_size: 1, max_size: 1, initial_size: 1 }, { SHOAL_LOG_LEVEL: 'info' });
    const holder = startService('test/fixtures/hold-lease.mjs', {}, [nats.url, n.nodeId, '800']);
    services.push(holder);
    const leased = await holder.waitFor((l) => l.msg === 'leased');
    holder.proc.kill('SIGKILL');
    // The pool has one resource and it is held: an acquire now must wait for the reclaim.
    const t0 = Date.now();
    const lease = await client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 5000 });
    expect(lease.resourceId).to.equal(leased.resourceId);
    // It waited for the 800 ms TTL (not handed out early); the upper bound only says it did not hang.
    expect(Date.now() - t0).to.be.within(300, 15_000);
    const expired = await n.waitFor((l) => l.msg === 'lease expired (holder gone?)');
    expect(expired.holder).to.include({ client: 'doomed-client' });
    await lease.release();
  });

  it('keeps a renewed lease past its TTL (SDK background renew) and replaces a resource after max reuse', async () => {
    const n = await node({ min_size: 1, max_size: 1, initial_size: 1, session_management: { max_reuse_count: 2 } });
    const lease = await client.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 300 });
    await sleep(1000);
    expect(await lease.exec('echo', { still: 'mine' })).to.deep.equal({ still: 'mine' });
    const first = lease.resourceId;
    await lease.release();
    const second = await client.acquire('synthetic', { nodeId: n.nodeId });
    expect(second.resourceId).to.equal(first);
    await second.release();
    const third = await client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 3000 });
    expect(third.resourceId).to.not.equal(first);
    await third.release();
  });

  it('hands failing creates to the waiters as a retryable POOL_UNAVAILABLE (the pool is down: fail fast) and backs off (attempts counted)', async () => {
    const n = await node({ min_size: 0, max_size: 2, initial_size: 0, create: { retry_base: '100ms', retry_max: '400ms' }, options: { failure_rate: 1 } });
    const errs = await Promise.all([0, 1, 2].map(() => client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 2000 }).catch((e) => e)));
    for (const e of errs) expect(e.code).to.be.oneOf(['POOL_UNAVAILABLE', 'POOL_TIMEOUT']);
    expect(errs.filter((e) => e.code === 'POOL_UNAVAILABLE').length).to.be.at.least(1);
    expect(errs.find((e) => e.code === 'POOL_UNAVAILABLE').message).to.contain('synthetic create failure');
    expect(errs.find((e) => e.code === 'POOL_UNAVAILABLE').retryable).to.equal(true);
    // Keep demand for 2 s: with 100→400 ms backoff, about 6-10 attempts, never a busy loop.
    const createErrors = async () => {
      const text = await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text();
      const m = /aicli_session_pool_operations_total\{[^}]*operation="create",result="error"\} (\d+)/.exec(text);
      return Number(m?.[1] ?? 0);
    };
    const before = await createErrors();
    const until = Date.now() + 2000;
    const codes = new Set<string>();
    while (Date.now() < until) await client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 300 }).then(() => codes.add('granted?!'), (e: any) => codes.add(e.code));
    // Every create fails (failure_rate 1): each acquire ends typed, none is granted. The pool is down (nothing
    // to lease), so mostly refused at once with POOL_UNAVAILABLE (the fail-fast contract; a create's generic
    // failure is no longer DRIVER_ERROR to the waiter). (UNAVAILABLE: the node's answer arrived after the
    // caller's own 300 ms, on a loaded machine.)
    expect([...codes].every((c) => ['POOL_UNAVAILABLE', 'POOL_TIMEOUT', 'UNAVAILABLE'].includes(c)), [...codes].join()).to.equal(true);
    const attempts = (await createErrors()) - before;
    expect(attempts).to.be.within(3, 16);
  });

  it('answers bad input with typed errors and keeps serving', async () => {
    const n = await node({ min_size: 1, max_size: 2, initial_size: 1, resource_limits: { max_payload: '4KB' } });
    const acq = s.nodeAcquire(n.nodeId);
    const codeOf = async (subject: string, data: Uint8Array) => ((await rawRequest(nc, subject, data)) as ShoalError).code;
    expect(await codeOf(acq, new Uint8Array([0xc1, 0x00, 0xff]))).to.equal('BAD_REQUEST');
    expect(await codeOf(acq, encode({ v: PROTOCOL_VERSION }))).to.equal('BAD_REQUEST');
    expect(await codeOf(acq, encode({ v: PROTOCOL_VERSION, pool: 'synthetic', timeoutMs: 'soon' }))).to.equal('BAD_REQUEST');
    expect(await codeOf(acq, encode({ v: 99, pool: 'synthetic', timeoutMs: 100 }))).to.equal('VERSION_MISMATCH');
    expect(await codeOf(acq, encode({ v: PROTOCOL_VERSION, pool: 'nope', timeoutMs: 100 }))).to.equal('POOL_NOT_FOUND');
    expect(await codeOf(s.leaseRelease(n.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: '01HUNKNOWN' }))).to.equal('LEASE_NOT_FOUND');
    expect(await codeOf(s.leaseExec(n.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: '01HUNKNOWN', op: 'echo' }))).to.equal('LEASE_NOT_FOUND');
    const big = await rawRequest(nc, acq, encode({ v: PROTOCOL_VERSION, pool: 'synthetic', timeoutMs: 100, pad: 'x'.repeat(10_000) })) as ShoalError;
    expect(big.code).to.equal('BAD_REQUEST');
    expect(big.message).to.contain('exceeds');
    // Still serving, nothing leaked.
    const lease = await client.acquire('synthetic', { nodeId: n.nodeId });
    expect(await lease.exec('echo', 7)).to.equal(7);
    await lease.release();
    const st = readReply<{ pools: Record<string, { active: number; total: number }> }>((await nc.request(s.nodeStatus(n.nodeId), encode({ v: 1 }))).data);
    expect(st.pools.synthetic!.active).to.equal(0);
  });

  it('streams a one-shot exec and a lease exec', async () => {
    const n = await node({ min_size: 1, max_size: 2, initial_size: 1 });
    const events: unknown[] = [];
    const call = client.exec('synthetic', 'stream', { chunks: 4 }, { nodeId: n.nodeId });
    for await (const e of call) events.push(e);
    expect(events).to.deep.equal([{ chunk: 0 }, { chunk: 1 }, { chunk: 2 }, { chunk: 3 }]);
    expect(await call.result).to.deep.equal({ chunks: 4 });
    const err: any = await client.exec('synthetic', 'fail', { message: 'boom' }, { nodeId: n.nodeId }).catch((e) => e);
    expect(err.code).to.equal('DRIVER_ERROR');
    expect(err.message).to.contain('boom');
  });

  it('publishes heartbeats with the pool numbers, serves /metrics and /healthz', async () => {
    const n = await node({ min_size: 2, max_size: 5, initial_size: 2, weight: 3 });
    const lease = await client.acquire('synthetic', { nodeId: n.nodeId });
    // After the grant: a heartbeat sent while the acquire was on its way would still say active 0.
    const sub = nc.subscribe(s.heartbeat(n.nodeId), { max: 1 });
    let hb: Heartbeat | undefined;
    for await (const m of sub) hb = parseHeartbeat(m.data);
    expect(hb!.nodeId).to.equal(n.nodeId);
    expect(hb!.intervalMs).to.equal(200);
    expect(hb!.pools.synthetic).to.include({ kind: 'synthetic', total: 2, active: 1, idle: 1, min: 2, max: 5, weight: 3, waiting: 0 });
    expect(hb!.pools.synthetic!.requestRate).to.be.greaterThan(0);
    expect(hb!.memory.rss).to.be.greaterThan(0);
    const metrics = await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text();
    expect(metrics).to.match(new RegExp(`aicli_session_pool_size\\{pool="synthetic",kind="synthetic",node="${n.nodeId}",type="active"\\} 1`));
    expect(metrics).to.contain('aicli_session_pool_operations_total{');
    expect(metrics).to.contain('aicli_session_pool_latency_histogram_bucket{');
    expect(metrics).to.contain('aicli_session_pool_reuse_rate{');
    const health = await fetch(`http://127.0.0.1:${n.httpPort}/healthz`);
    expect(health.status).to.equal(200);
    const sessions = await (await fetch(`http://127.0.0.1:${n.httpPort}/api/v1/session-pool/sessions`)).json() as { sessions: { status: string }[] };
    expect(sessions.sessions.map((x) => x.status).sort()).to.deep.equal(['active', 'ready']);
    await lease.release();
  });

  it('scales up, down and to a target over NATS, bounded by min and max', async () => {
    const n = await node({ min_size: 1, max_size: 4, initial_size: 1 });
    const scale = (op: string, k: number) => call<{ target: number; total: number }>(nc, s.nodeScale(n.nodeId), { pool: 'synthetic', op, n: k }, 3000);
    expect((await scale('up', 10)).target).to.equal(4);
    await untilStatus(n.nodeId, (p) => p.total === 4 && p.idle === 4);
    const held = await client.acquire('synthetic', { nodeId: n.nodeId });
    expect((await scale('target', 0)).target).to.equal(1);
    // The idle three go; the held one stays (min 1).
    expect(await untilStatus(n.nodeId, (p) => p.total === 1)).to.include({ total: 1, active: 1 });
    const bad: any = await call(nc, s.nodeScale(n.nodeId), { pool: 'synthetic', op: 'sideways', n: 1 }, 3000).catch((e) => e);
    expect(bad.code).to.equal('BAD_REQUEST');
    await held.release();
  });

  it('refuses work beyond max_concurrent_requests with POOL_BUSY, never a crash', async () => {
    const n = await node({ min_size: 0, max_size: 1, initial_size: 0, resource_limits: { max_concurrent_requests: 2 } });
    const held = await client.acquire('synthetic', { nodeId: n.nodeId });
    // Each waiter hands its lease back as soon as it has it, so that the other can be served too.
    const waiting = [0, 1].map(() => client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 10_000 }).then(async (l) => { const id = l.id; await l.release(); return id; }));
    await untilStatus(n.nodeId, (p) => p.waiting === 2);
    const busy = await client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 500 }).catch((e) => e);
    expect(busy.code).to.equal('POOL_BUSY');
    await held.release();
    // Both waiters were served (a refusal of the third did not cost them their place).
    const ids = await Promise.all(waiting);
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).to.equal(true);
    expect(new Set(ids).size).to.equal(2);
  });

  it('stops at start-up on a bad config value, naming the key, the value and its source', async () => {
    const svc = startService('services/pool-node/dist/main.js', { SHOAL_NATS_URL: nats.url, AICLI_SESSION_POOL_MAX_SIZE: 'lots' });
    services.push(svc);
    expect(await svc.exited).to.equal(2);
    expect(svc.stderr).to.contain('max_size').and.contain('lots').and.contain('AICLI_SESSION_POOL_MAX_SIZE');
  });

  it('runs a one-shot exec longer than the lease TTL (its internal lease outlives the deadline)', async () => {
    const n = await node({ min_size: 1, max_size: 1, initial_size: 1, lease_ttl: '200ms' });
    expect(await client.exec('synthetic', 'sleep', { ms: 600 }, { nodeId: n.nodeId, timeoutMs: 3000 })).to.deep.equal({ slept: 600 });
    expect(n.logs.find((l) => l.msg === 'lease expired (holder gone?)')).to.equal(undefined);
    const st = await call<{ pools: Record<string, { active: number; idle: number }> }>(nc, s.nodeStatus(n.nodeId), {}, 3000);
    expect(st.pools.synthetic).to.include({ active: 0, idle: 1 });
  });

  it('drains on SIGTERM: new acquires refused, the held lease finishes, exit 0 with every resource destroyed', async () => {
    const n = await node({ min_size: 2, max_size: 3, initial_size: 2 }, { SHOAL_LOG_LEVEL: 'debug' });
    const lease = await client.acquire('synthetic', { nodeId: n.nodeId });
    const metrics = await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text();
    const created = Number(/aicli_session_pool_operations_total\{[^}]*operation="create",result="success"\} (\d+)/.exec(metrics)?.[1]);
    expect(created).to.equal(2);
    n.proc.kill('SIGTERM');
    await n.waitFor((l) => l.msg === 'draining');
    const refused = await client.acquire('synthetic', { nodeId: n.nodeId, timeoutMs: 1000 }).catch((e) => e);
    expect(refused.code).to.be.oneOf(['NODE_DRAINING', 'UNAVAILABLE']);
    expect(await lease.exec('echo', 'in flight')).to.equal('in flight');
    await lease.release();
    const code = await n.exited;
    expect(code).to.equal(0);
    // Every resource it created is destroyed, none twice.
    const destroyed = n.logs.filter((l) => l.msg === 'resource destroyed');
    expect(destroyed.length).to.equal(created);
    expect(new Set(destroyed.map((l) => l.resourceId)).size).to.equal(created);
    expect(n.logs.find((l) => l.msg === 'drained')).to.include({ revoked: 0 });
  });
});

describe('pool-node answers over max_payload with a typed error, not silence', function () {
  this.timeout(20_000);
  it('ends a stream whose result is over the server max_payload with BAD_REQUEST payload_too_large', async () => {
    const small = await startNatsServer({ jetstream: false, maxPayload: 8192 });
    const c = await connect({ servers: [small.url], name: 'small' });
    const n = await startPoolNode({ SHOAL_NATS_URL: small.url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 1, initial_size: 1 }) });
    try {
      const t0 = Date.now();
      const err: any = await c.exec('synthetic', 'fill', { bytes: 20_000 }, { nodeId: n.nodeId, timeoutMs: 10_000 }).catch((e) => e);
      expect(err.code).to.equal('BAD_REQUEST');
      expect(err.details).to.include({ reason: 'payload_too_large' });
      expect(Date.now() - t0).to.be.lessThan(9000); // answered, not left to time out at 10 s
      expect(await c.exec('synthetic', 'echo', { small: true }, { nodeId: n.nodeId })).to.deep.equal({ small: true });
    } finally {
      await n.kill('SIGKILL');
      await c.close();
      await small.stop();
    }
  });
});
