import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { encode, ErrorCodes, PROTOCOL_VERSION, readReply, ShoalError, SETTINGS_BUCKET, subjects, type Lease } from '@shoal/protocol';
import { transportError } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Settings that mean what they say (issue 13), with real processes: two
 * pool-nodes whose synthetic pools weigh 3 and 1, and a balancer whose pool
 * strategy comes from AICLI_SESSION_POOL_LOAD_BALANCING while its config's
 * `balancer.strategy` says something else. Placement is watched through the
 * nodes that grant leases, never through the balancer's own report alone.
 */
const s = subjects('shoal');
const POOL = 'synthetic';

interface Row { key: string; pool?: string; nodeId?: string; value: unknown; source: string; by?: string; at?: number }
interface Status { strategy: string; settings: { values: Row[] }; nodes: { nodeId: string; draining: boolean; inFlight: number; weight: number | null; pools: Record<string, { total: number }> }[] }

describe('operator settings (2 pool-nodes, 1 balancer, real processes)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  let balancer: Service;
  const nodes: Service[] = [];

  async function request<T>(subject: string, body: Record<string, unknown>, timeout = 5000): Promise<T> {
    try {
      return readReply<T>((await nc.request(subject, encode({ v: PROTOCOL_VERSION, ...body }), { timeout })).data);
    } catch (err) {
      throw err instanceof ShoalError ? err : transportError(err, subject);
    }
  }
  const status = () => request<Status>(s.adminStatus, {});
  const release = (l: Lease) => request(s.leaseRelease(l.nodeId), { leaseId: l.leaseId, secret: l.secret });

  /**
   * `n` acquire+release in a row through the balancer; the nodes that granted
   * them, in order. Before each, wait until the balancer's view has caught up
   * (no grant it has not seen in a heartbeat yet): a node whose idle resources
   * look claimed is rightly skipped, which would blur the strategy's pattern.
   */
  async function placements(n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      await eventually(async () => { expect((await status()).nodes.map((x) => x.inFlight)).to.deep.equal([0, 0]); }, 5000);
      const l = await request<Lease>(s.poolAcquire(POOL), { pool: POOL, timeoutMs: 3000 });
      out.push(l.nodeId);
      await release(l);
    }
    return out;
  }
  const count = (ids: string[]) => ids.reduce<Record<string, number>>((a, id) => ({ ...a, [id]: (a[id] ?? 0) + 1 }), {});

  async function eventually(check: () => Promise<void>, ms = 10_000): Promise<void> {
    const until = Date.now() + ms;
    for (;;) {
      try { return await check(); } catch (err) { if (Date.now() > until) throw err; }
      await sleep(100);
    }
  }

  before(async function () {
    nats = await startNatsServer();
    nc = await natsConnect({ servers: nats.url });
    dir = mkdtempSync(join(tmpdir(), 'shoal-operator-settings-'));
    const cfg = join(dir, 'balancer.yaml');
    // The pool's acquire_timeout (1500ms) is what applies to a client that gives none.
    writeFileSync(cfg, [
      'balancer:', '  strategy: p2c',
      'session_pool:', '  acquire_timeout: 1500ms',
      'pools:', '  synthetic:', '    driver: synthetic', '',
    ].join('\n'));
    for (const [id, weight] of [['node-a', '3'], ['node-b', '1']] as const) {
      nodes.push(await startPoolNode({
        SHOAL_NATS_URL: nats.url, SHOAL_NODE_ID: id, SHOAL_HEARTBEAT_INTERVAL: '200ms', SHOAL_DRAIN_GRACE: '1s',
        SHOAL_POOL_SYNTHETIC_MIN_SIZE: '8', SHOAL_POOL_SYNTHETIC_INITIAL_SIZE: '8', SHOAL_POOL_SYNTHETIC_MAX_SIZE: '8',
        SHOAL_POOL_SYNTHETIC_WEIGHT: weight,
      }));
    }
    balancer = startService('services/balancer/dist/main.js', {
      SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info', SHOAL_BALANCER_ID: 'b1',
      AICLI_SESSION_POOL_LOAD_BALANCING: 'round_robin',
    });
    await balancer.waitFor((l) => l.msg === 'listening');
    await eventually(async () => { expect((await status()).nodes.map((n) => n.nodeId).sort()).to.deep.equal(['node-a', 'node-b']); });
  });

  after(async () => {
    await Promise.all([balancer, ...nodes].map((p) => p?.kill('SIGKILL')));
    await nc?.close();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('places with the pool\'s strategy from AICLI_SESSION_POOL_LOAD_BALANCING, not balancer.strategy, and says where it came from', async () => {
    // round_robin ignores the weights 3:1; p2c or weighted_round_robin would not alternate strictly.
    const ids = await placements(8);
    expect(ids).to.deep.equal(['node-a', 'node-b', 'node-a', 'node-b', 'node-a', 'node-b', 'node-a', 'node-b']);
    const st = await status();
    const row = st.settings.values.find((r) => r.key === 'strategy' && r.pool === POOL)!;
    expect(row).to.include({ value: 'round_robin', source: 'env AICLI_SESSION_POOL_LOAD_BALANCING' });
  });

  it('a runtime override wins, is shown with who and when, and `settings reset` returns to the config', async () => {
    const before = Date.now();
    await request(s.adminStrategy, { strategy: 'weighted_round_robin', by: 'tester@here' });
    // Smooth weighted round robin with weights 3 and 1: exactly 6 and 2 in 8 picks.
    expect(count(await placements(8))).to.deep.equal({ 'node-a': 6, 'node-b': 2 });
    const row = (await status()).settings.values.find((r) => r.key === 'strategy' && r.pool === POOL)!;
    expect(row).to.include({ value: 'weighted_round_robin', source: 'runtime', by: 'tester@here' });
    expect(row.at).to.be.within(before - 1000, Date.now() + 1000);

    const reply = await request<{ reset: string[] }>(s.adminSettingsReset, { key: 'strategy', by: 'tester@here' });
    expect(reply.reset).to.deep.equal(['strategy']);
    await eventually(async () => {
      const r = (await status()).settings.values.find((x) => x.key === 'strategy' && x.pool === POOL)!;
      expect(r.source).to.equal('env AICLI_SESSION_POOL_LOAD_BALANCING');
    });
    const ids = await placements(4);
    expect(count(ids)).to.deep.equal({ 'node-a': 2, 'node-b': 2 });
    // The key is gone from the bucket, not just ignored.
    const kv = await nc.jetstream().views.kv(SETTINGS_BUCKET);
    expect((await kv.get('strategy'))?.operation ?? 'none').to.be.oneOf(['DEL', 'PURGE', 'none']);
  });

  it('a weight for an unknown node is refused and stored nowhere; a known node\'s weight is shown and reset', async () => {
    const err = await request(s.adminWeight, { nodeId: 'node-9', weight: 5 }).then(() => undefined, (e: unknown) => e as ShoalError);
    expect(err?.code).to.equal(ErrorCodes.BAD_REQUEST);
    expect(err?.message).to.match(/no node node-9/);
    const kv = await nc.jetstream().views.kv(SETTINGS_BUCKET);
    expect(await kv.get('weight.node-9')).to.equal(null);

    await request(s.adminWeight, { nodeId: 'node-b', weight: 0, by: 'tester@here' });
    await eventually(async () => { expect((await status()).settings.values.find((r) => r.key === 'weight.node-b')).to.include({ value: 0, source: 'runtime', by: 'tester@here' }); });
    // Weight 0: node-b takes nothing.
    expect(count(await placements(4))).to.deep.equal({ 'node-a': 4 });
    await request(s.adminSettingsReset, {});
    await eventually(async () => { expect((await status()).settings.values.find((r) => r.key === 'weight.node-b')).to.equal(undefined); });
    expect(count(await placements(4))).to.deep.equal({ 'node-a': 2, 'node-b': 2 });
  });

  it('acquire_timeout applies when the client gives no deadline', async () => {
    // Hold every resource of both nodes (8 each, straight from each node), then ask the balancer once more without timeoutMs.
    const held: Lease[] = [];
    for (const id of ['node-a', 'node-b']) for (let i = 0; i < 8; i++) held.push(await request<Lease>(s.nodeAcquire(id), { pool: POOL, timeoutMs: 3000 }));
    const t0 = Date.now();
    const err = await request(s.poolAcquire(POOL), { pool: POOL }, 20_000).then(() => undefined, (e: unknown) => e as ShoalError);
    const took = Date.now() - t0;
    for (const l of held) await release(l);
    expect(err?.code).to.equal(ErrorCodes.POOL_TIMEOUT);
    // The pool's 1.5 s, not the 30 s default the SDK used to send (generous upper bound: a loaded machine).
    expect(took).to.be.at.least(1200);
    expect(took).to.be.below(15_000);
  });

  it('undrain within the grace period keeps leases and resources; after the drain finished, the pools start again', async () => {
    const lease = await request<Lease>(s.nodeAcquire('node-b'), { pool: POOL, timeoutMs: 3000 });
    await request(s.nodeDrain('node-b'), { graceMs: 60_000 });
    await eventually(async () => { expect((await status()).nodes.find((n) => n.nodeId === 'node-b')!.draining).to.equal(true); });
    expect(count(await placements(3))).to.deep.equal({ 'node-a': 3 });
    const r = await request<{ pools: Record<string, string> }>(s.nodeUndrain('node-b'), {});
    expect(r.pools).to.deep.equal({ [POOL]: 'resumed' });
    await release(lease); // still held: the drain did not revoke it
    await eventually(async () => { expect((await status()).nodes.find((n) => n.nodeId === 'node-b')!.draining).to.equal(false); });
    expect(count(await placements(4))).to.deep.equal({ 'node-a': 2, 'node-b': 2 });

    // A drain that finished destroying: undrain restarts the pool, which warms up again.
    await request(s.nodeDrain('node-b'), { graceMs: 0 });
    await eventually(async () => { expect((await status()).nodes.find((n) => n.nodeId === 'node-b')!.pools[POOL]!.total).to.equal(0); });
    let again: { pools: Record<string, string> } | undefined;
    await eventually(async () => { again = await request<{ pools: Record<string, string> }>(s.nodeUndrain('node-b'), {}); });
    expect(again!.pools).to.deep.equal({ [POOL]: 'restarted' });
    await eventually(async () => {
      const n = (await status()).nodes.find((x) => x.nodeId === 'node-b')!;
      expect(n.draining).to.equal(false);
      expect(n.pools[POOL]!.total).to.equal(8);
    });
    expect(count(await placements(4))).to.deep.equal({ 'node-a': 2, 'node-b': 2 });
  });
});

describe('a node stopped during its warm-up (real process)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    nats = await startNatsServer();
    nc = await natsConnect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('drains and exits 0 without ever logging itself ready or listening', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-warmup-'));
    const cfg = join(dir, 'node.yaml');
    // Slow creates: the warm-up takes 3 s.
    writeFileSync(cfg, 'pools:\n  synthetic:\n    driver: synthetic\n    min_size: 2\n    initial_size: 2\n    max_size: 2\n    create: { timeout: 10s }\n    options: { create_latency: 3000 }\n');
    const node = startService('services/pool-node/dist/main.js', {
      SHOAL_NATS_URL: nats.url, SHOAL_NODE_ID: 'node-w', SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info', SHOAL_DRAIN_GRACE: '1s', SHOAL_CONFIG: cfg,
    });
    try {
      // Its control subjects answer before the warm-up ends: it is warming up now.
      await (async () => {
        const until = Date.now() + 10_000;
        for (;;) {
          try { await request(nc, s.nodeStatus('node-w')); return; } catch (err) { if (Date.now() > until) throw err; }
          await sleep(50);
        }
      })();
      node.proc.kill('SIGTERM');
      expect(await node.exited).to.equal(0);
      const msgs = node.logs.map((l) => l.msg);
      expect(msgs).to.include('draining');
      expect(msgs).not.to.include('pool-node ready');
      expect(msgs).not.to.include('listening');
    } finally {
      await node.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function request(nc: NatsConnection, subject: string): Promise<unknown> {
  return readReply((await nc.request(subject, encode({ v: PROTOCOL_VERSION }), { timeout: 1000 })).data);
}
