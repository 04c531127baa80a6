import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, NotParkedError, type Client } from '@shoal/client';
import { encode, PROTOCOL_VERSION, subjects, type HealthVerdict } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { startPoolNode, startService, until, type Service } from '../helpers/procs.js';

/**
 * A chat loop: release with a key, acquire with it at once, again and again.
 * The release's reply comes before the resource is parked (its return, here
 * a 300 ms validation, runs after) and long before a heartbeat (every 10 s
 * here) could tell a balancer the key: yet every re-acquire is a hit. Two
 * pool-node processes and a balancer on a real nats-server, synthetic pools.
 */
const s = subjects('shoal');

describe('parking: re-acquire right after the release (SDK, balancer, 2 pool-nodes)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  let dir: string;
  const nodes: (Service & { nodeId: string; httpPort: number | null })[] = [];
  let balancer: Service;
  let client: Client;

  before(async function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-park-affinity-'));
    nats = await startNatsServer({ jetstream: true });
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      // A heartbeat long after each release: the balancers cannot know the key in time.
      node: { heartbeat_interval: '10s', drain_grace: '500ms' },
      pools: { chat: { driver: 'synthetic', min_size: 2, max_size: 4, initial_size: 2, options: { validate_latency: 300 }, session_management: { max_parked: 4, validate_on_return: true, validate_skip_window: '0s' } } },
    }));
    for (let i = 0; i < 2; i++) nodes.push(await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg }));
    balancer = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1' });
    await balancer.waitFor((l) => l.msg === 'listening');
    client = await connect({ servers: [nats.url], name: 'chat-loop' });
    await until('the balancer sees both nodes', async () => {
      const st = await call<{ nodes: unknown[] }>(client.nc, s.adminStatus, {}, 3000).catch(() => ({ nodes: [] }));
      return st.nodes.length === 2;
    });
  });
  after(async () => {
    await client?.close();
    await balancer?.kill();
    await Promise.all(nodes.map((n) => n.kill().catch(() => {})));
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('release({park}) then acquire({park}) at once, ten times over: a hit every time, the same resource', async () => {
    let lease = await client.acquire('chat', { timeoutMs: 10_000 });
    const first = lease.resourceId;
    for (let turn = 1; turn <= 10; turn++) {
      await lease.release({ park: 'conv-loop' });
      lease = await client.acquire('chat', { park: 'conv-loop', timeoutMs: 10_000 });
      expect(lease.parked, `turn ${turn}`).to.equal('hit');
      expect(lease.resourceId, `turn ${turn}`).to.equal(first);
    }
    await lease.release();
  });

  it('one-shot calls with a key, back to back, ten times: each runs on the resource the previous one parked', async () => {
    const info = async () => (await client.exec('chat', 'info', {}, { park: 'conv-oneshot', timeoutMs: 10_000 })) as { id: string; execs: number };
    const first = await info();
    for (let turn = 2; turn <= 11; turn++) {
      const now = await info();
      expect(now.id, `call ${turn}`).to.equal(first.id);
      expect(now.execs, `call ${turn}`).to.equal(first.execs + turn - 1);
    }
  });

  it('a node asked with onlyParked for a key it does not have answers NOT_PARKED and takes nothing; the SDK then goes through the balancer', async () => {
    const node = nodes[0]!.nodeId;
    const active = async () => (await call<{ pools: Record<string, { active: number }> }>(client.nc, s.nodeStatus(node), { v: PROTOCOL_VERSION }, 3000)).pools.chat!.active;
    // Resources of the earlier calls may still be returning (a 300 ms validation).
    await until('nothing held or returning on the node', async () => (await active()) === 0);
    const err = await call(client.nc, s.nodeAcquire(node), { v: PROTOCOL_VERSION, pool: 'chat', park: 'nowhere', onlyParked: true, timeoutMs: 5000 }, 5000).then(() => undefined, (e: unknown) => e);
    expect((err as { code?: string })?.code).to.equal('NOT_PARKED');
    const bad = await call(client.nc, s.nodeAcquire(node), { v: PROTOCOL_VERSION, pool: 'chat', onlyParked: true }, 5000).then(() => undefined, (e: unknown) => e);
    expect((bad as { code?: string })?.code).to.equal('BAD_REQUEST');
    // A one-shot likewise: refused as malformed, not NOT_PARKED (which a client would retry elsewhere).
    const badExec = await call(client.nc, s.nodeExec(node), { v: PROTOCOL_VERSION, pool: 'chat', op: 'echo', args: {}, onlyParked: true }, 5000).then(() => undefined, (e: unknown) => e);
    expect((badExec as { code?: string })?.code).to.equal('BAD_REQUEST');
    expect(await active()).to.equal(0);
    expect(new NotParkedError('NOT_PARKED', 'x')).to.be.instanceOf(Error);
    // A miss of the direct try is routing, not an error: not in the node's error count (BAD_REQUEST is).
    const metrics = await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/metrics`)).text();
    expect(metrics).to.match(/shoal_errors_total\{[^}]*code="BAD_REQUEST"[^}]*\} 2/);
    expect(metrics).to.not.contain('code="NOT_PARKED"');

    // The key parked here, then claimed behind this client's back (another client, straight from the node):
    // this client's remembered node answers NOT_PARKED, and the acquire goes through the balancer.
    const bob = await connect({ servers: [nats.url], name: 'bob' });
    try {
      const a = await client.acquire('chat', { timeoutMs: 10_000 });
      await a.release({ park: 'conv-taken' });
      const bobs = await bob.acquire('chat', { park: 'conv-taken', nodeId: a.nodeId, timeoutMs: 10_000 });
      expect(bobs.parked).to.equal('hit');
      const mine = await client.acquire('chat', { park: 'conv-taken', timeoutMs: 10_000 });
      expect(mine.parked).to.equal('gone');
      expect(mine.resourceId).to.not.equal(bobs.resourceId);
      await mine.release();
      await bobs.release();
    } finally {
      await bob.close();
    }
  });

  it('a node the health checker has out of rotation refuses the direct try: the chat moves through the balancer (also when only its pool is unhealthy)', async () => {
    const verdict = (nodeId: string, healthy: boolean, pools: HealthVerdict['pools'] = {}): HealthVerdict => ({ v: PROTOCOL_VERSION, nodeId, healthy, at: Date.now(), since: Date.now(), checkerId: 'test', ...(healthy ? {} : { reason: 'test says so' }), checks: [], pools });
    const tell = async (v: HealthVerdict) => { client.nc.publish(s.healthVerdict(v.nodeId), encode(v)); await client.nc.flush(); };
    let sick: string | undefined;
    // Healthy again however this ends: the next test needs both nodes.
    try {
      for (const pools of [undefined, { chat: { healthy: false, reason: 'backend down' } }]) {
        const a = await client.acquire('chat', { timeoutMs: 10_000 });
        await a.release({ park: 'conv-sick' });
        const node = a.nodeId;
        sick = node;
        await tell(pools ? verdict(node, true, pools) : verdict(node, false));
        // The balancers hear it too (they skip the node); the node hears it on the same subject: wait until it refuses.
        await until('the node refuses onlyParked', async () => {
          const e = await call(client.nc, s.nodeAcquire(node), { v: PROTOCOL_VERSION, pool: 'chat', park: 'conv-probe', onlyParked: true, timeoutMs: 1000 }, 3000).then(() => undefined, (err: unknown) => err);
          return (e as { details?: { reason?: string } })?.details?.reason === 'unhealthy';
        });
        const l = await client.acquire('chat', { park: 'conv-sick', timeoutMs: 10_000 });
        expect(l.nodeId, pools ? 'pool unhealthy' : 'node unhealthy').to.not.equal(node);
        expect(l.parked).to.equal('gone');
        await l.release({ park: 'conv-sick-2' });
        // A one-shot with a key parked on the sick node goes elsewhere too.
        const b = await client.acquire('chat', { nodeId: node, timeoutMs: 10_000 });
        await b.release({ park: 'conv-sick-1shot' });
        const ran = (await client.exec('chat', 'info', {}, { park: 'conv-sick-1shot', timeoutMs: 10_000 })) as { id: string };
        expect(ran.id).to.not.equal(b.resourceId);
        await tell(verdict(node, true));
        await until('the node takes onlyParked again', async () => {
          const e = await call(client.nc, s.nodeAcquire(node), { v: PROTOCOL_VERSION, pool: 'chat', park: 'conv-probe', onlyParked: true, timeoutMs: 1000 }, 3000).then(() => undefined, (err: unknown) => err);
          return (e as { code?: string })?.code === 'NOT_PARKED' && (e as { details?: { reason?: string } }).details?.reason === undefined;
        });
      }
    } finally {
      if (sick !== undefined) await tell(verdict(sick, true));
    }
  });

  it('a node the operator set to weight 0 refuses the direct try (it watches its weight): the chat moves through the balancer', async () => {
    const a = await client.acquire('chat', { timeoutMs: 10_000 });
    await a.release({ park: 'conv-weight' });
    const node = a.nodeId;
    const refusal = async () => (await call(client.nc, s.nodeAcquire(node), { v: PROTOCOL_VERSION, pool: 'chat', park: 'conv-probe', onlyParked: true, timeoutMs: 1000 }, 3000).then(() => undefined, (err: unknown) => err)) as { code?: string; details?: { reason?: string } } | undefined;
    await call(client.nc, s.adminWeight, { v: PROTOCOL_VERSION, nodeId: node, weight: 0 }, 5000);
    try {
      await until('the node refuses onlyParked for its weight', async () => (await refusal())?.details?.reason === 'weight_0');
      const l = await client.acquire('chat', { park: 'conv-weight', timeoutMs: 10_000 });
      expect(l.nodeId).to.not.equal(node);
      expect(l.parked).to.equal('gone');
      await l.release();
    } finally {
      await call(client.nc, s.adminWeight, { v: PROTOCOL_VERSION, nodeId: node, weight: 1 }, 5000);
    }
    await until('the node takes onlyParked again', async () => { const e = await refusal(); return e?.code === 'NOT_PARKED' && e.details?.reason === undefined; });
  });

  it('a client\'s onlyParked sent to a balancer is not forwarded: a key parked nowhere gets a lease, not NOT_PARKED', async () => {
    const l = await call<{ leaseId: string; nodeId: string; secret: string; park?: string }>(client.nc, s.poolAcquire('chat'), { v: PROTOCOL_VERSION, pool: 'chat', park: 'conv-unknown', onlyParked: true, timeoutMs: 5000 }, 6000);
    expect(l.park).to.equal('gone');
    await call(client.nc, s.leaseRelease(l.nodeId), { v: PROTOCOL_VERSION, leaseId: l.leaseId, secret: l.secret }, 5000);
  });

  it('a release says parked only where it parks (not with reset or destroy)', async () => {
    const rel = async (opts: Record<string, unknown>) => {
      const l = await client.acquire('chat', { timeoutMs: 10_000 });
      const r = await call<{ released: string; parked?: boolean }>(client.nc, s.leaseRelease(l.nodeId), { v: PROTOCOL_VERSION, leaseId: l.id, secret: l.info.secret, ...opts }, 5000);
      l.abandon();
      return r.parked;
    };
    expect(await rel({ park: 'conv-rel' })).to.equal(true);
    expect(await rel({ park: 'conv-rel-reset', reset: true })).to.equal(undefined);
    expect(await rel({ park: 'conv-rel-destroy', destroy: true })).to.equal(undefined);
    expect(await rel({})).to.equal(undefined);
  });

  it('the node the SDK parked on is gone: the keyed acquire falls back to the balancer and gets a lease elsewhere', async () => {
    const a = await client.acquire('chat', { timeoutMs: 10_000 });
    await a.release({ park: 'conv-dead' });
    const victim = nodes.find((n) => n.nodeId === a.nodeId)!;
    await victim.kill('SIGKILL');
    // No responders there: through the balancer (which may take the dead node for alive a moment longer, and tries the other).
    const l = await client.acquire('chat', { park: 'conv-dead', timeoutMs: 20_000 });
    expect(l.nodeId).to.not.equal(victim.nodeId);
    expect(l.parked).to.equal('gone');
    await l.release();
  });
});
