import { expect } from 'chai';
import { connect, type Client } from '@shoal/client';
import { encode, inboxPrefixFor, PROTOCOL_VERSION, readReply, subjects, type ShoalError } from '@shoal/protocol';
import { call, nkeyPublicKey, type NatsConnection } from '@shoal/runtime';
import { readFileSync } from 'node:fs';
import { writeConfig } from '../helpers/cluster.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';
import { startSecureNats, type SecureNats } from '../helpers/roles.js';

/**
 * The attacks of issue 10, each tried by a `client` identity against a real
 * nats-server with Shoal's roles on (as `shoal up` configures it), a balancer
 * and a pool-node as OS processes. A positive control (the admin role doing
 * the same thing successfully) keeps each refusal from passing by accident.
 */
const s = subjects('shoal');
const POOL = 'synthetic';

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A raw request; resolves with the typed error, the reply, or 'no answer'. */
async function tryRequest(nc: NatsConnection, subject: string, body: Record<string, unknown>, ms = 700): Promise<unknown> {
  try {
    return await call(nc, subject, body, ms);
  } catch (err) {
    return err;
  }
}

interface NodeStatus { nodeId: string; draining: boolean; pools: Record<string, { target: number; active: number }> }

describe('security: roles on NATS (integration, real nats-server with authorization)', function () {
  this.timeout(60_000);
  let sec: SecureNats;
  let node: Service & { nodeId: string; httpPort: number | null };
  let balancer: Service;
  let admin: NatsConnection;
  let a: NatsConnection;
  let b: NatsConnection;
  let sdkA: Client;

  before(async function () {
    this.timeout(60_000);
    sec = await startSecureNats();
    const cfg = writeConfig({ min_size: 2, max_size: 4, initial_size: 2 });
    node = await startPoolNode({ SHOAL_NATS_URL: sec.nats.url, SHOAL_CONFIG: cfg, SHOAL_NODE_ID: 'n1', SHOAL_NATS_NKEY_SEED_FILE: sec.seed('pool-node') });
    balancer = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: sec.nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '0', SHOAL_BALANCER_ID: 'b1', SHOAL_NATS_NKEY_SEED_FILE: sec.seed('balancer') });
    await balancer.waitFor((l) => l.msg === 'listening');
    admin = await sec.connectAs('admin');
    a = await sec.connectAs('client');
    b = await sec.connectAs('client-b');
    sdkA = await connect({ nc: a });
    await until('the balancer to know n1', async () => ((await tryRequest(admin, s.adminStatus, {})) as { nodes?: unknown[] }).nodes?.length ? true : undefined);
  });

  after(async () => {
    await sdkA?.close().catch(() => {});
    for (const nc of [admin, a, b]) await nc?.close().catch(() => {});
    await Promise.all([node, balancer].map((p) => p?.kill('SIGKILL')));
    await sec?.stop();
  });

  const nodeStatus = async () => readReply<NodeStatus>((await admin.request(s.nodeStatus('n1'), encode({ v: PROTOCOL_VERSION }), { timeout: 2000 })).data);

  it('the SDK works as a client: acquire, exec, release, one-shot exec', async () => {
    const lease = await sdkA.acquire(POOL, { timeoutMs: 5000 });
    expect(lease.info.secret).to.be.a('string');
    expect(await lease.exec('echo', { hi: 1 })).to.deep.equal({ hi: 1 });
    await lease.release();
    expect(await sdkA.exec(POOL, 'echo', 'one-shot', { timeoutMs: 5000 })).to.equal('one-shot');
  });

  it('a client cannot sniff: `>` and another client\'s inbox prefix are refused, and it reads none of their replies', async () => {
    const errors: string[] = [];
    let seen = 0;
    b.subscribe('>', { callback: (err) => { if (err) errors.push(err.message); else seen++; } });
    const aPrefix = inboxPrefixFor(nkeyPublicKey(readFileSync(sec.seed('client'), 'utf8')));
    b.subscribe(`${aPrefix}.>`, { callback: (err) => { if (err) errors.push(err.message); else seen++; } });
    await b.flush();
    const lease = await sdkA.acquire(POOL, { timeoutMs: 5000 });
    await lease.exec('echo', { secret: 'payload' });
    await lease.release();
    await until('both subscriptions refused', () => (errors.length >= 2 ? true : undefined), 5000);
    expect(errors.join(' ')).to.match(/permissions violation/i);
    expect(seen).to.equal(0);
  });

  it('a client cannot heartbeat: a forged node never joins', async () => {
    const hb = { v: PROTOCOL_VERSION, nodeId: 'phantom', seq: 0, startedAt: Date.now(), intervalMs: 1000, draining: false, host: 'x', pid: 1, inFlight: 0, maxConcurrent: 10, cpu: 0, memory: { rss: 0, heapUsed: 0 }, pools: { [POOL]: { kind: 'synthetic', total: 100, idle: 100, active: 0, creating: 0, waiting: 0, min: 0, max: 100, target: 100, maxWaiting: 10, weight: 1000, latencyMs: 0, execLatencyMs: 0, errorRate: 0, requestRate: 0, reuseRate: 0, memoryBytes: 0, available: true } } };
    for (let i = 0; i < 5; i++) { hb.seq = i; b.publish(s.heartbeat('phantom'), encode(hb)); }
    await b.flush().catch(() => {});
    await sleep(500);
    const st = await call<{ nodes: { nodeId: string }[] }>(admin, s.adminStatus, {}, 2000);
    expect(st.nodes.map((n) => n.nodeId)).to.deep.equal(['n1']);
  });

  it('a client cannot steer: strategy, weight, scale, drain and the settings KV are refused; admin can', async () => {
    const before = await call<{ strategy: string }>(admin, s.adminStatus, {}, 2000);
    const other = before.strategy === 'round_robin' ? 'least_connections' : 'round_robin';
    expect(await tryRequest(b, s.adminStrategy, { strategy: other })).to.be.instanceOf(Error);
    expect(await tryRequest(b, s.adminWeight, { nodeId: 'n1', weight: 0 })).to.be.instanceOf(Error);
    expect(await tryRequest(b, s.nodeScale('n1'), { pool: POOL, op: 'target', n: 0 })).to.be.instanceOf(Error);
    expect(await tryRequest(b, s.nodeDrain('n1'), {})).to.be.instanceOf(Error);
    const kvErr = await b.jetstream().views.kv('shoal_settings').then((kv) => kv.put('strategy', JSON.stringify({ strategy: other })), (e: Error) => e);
    expect(kvErr).to.be.instanceOf(Error);
    await sleep(300);
    const after = await call<{ strategy: string; nodes: { weight: number | null }[] }>(admin, s.adminStatus, {}, 2000);
    expect(after.strategy).to.equal(before.strategy);
    expect(after.nodes[0]!.weight).to.equal(null);
    const st = await nodeStatus();
    expect(st.draining).to.equal(false);
    expect(st.pools[POOL]!.target).to.equal(2);
    // Positive control: the admin role does it.
    await call(admin, s.adminStrategy, { strategy: other }, 3000);
    await until('the strategy set by admin', async () => ((await call<{ strategy: string }>(admin, s.adminStatus, {}, 2000)).strategy === other ? true : undefined));
  });

  it('a client cannot touch another client\'s lease: no secret or a wrong one answers exactly as an unknown lease', async () => {
    const lease = await sdkA.acquire(POOL, { timeoutMs: 5000, nodeId: 'n1' });
    const unknown = (await tryRequest(b, s.leaseRelease('n1'), { leaseId: 'AAAAAAAAAAAAAAAAAAAAAA', secret: 'AAAAAAAAAAAAAAAAAAAAAA' })) as ShoalError;
    expect(unknown.code).to.equal('LEASE_NOT_FOUND');
    for (const secret of [undefined, 'AAAAAAAAAAAAAAAAAAAAAA', lease.info.secret!.slice(0, -1) + (lease.info.secret!.endsWith('A') ? 'B' : 'A')]) {
      for (const subject of [s.leaseRelease('n1'), s.leaseRenew('n1')]) {
        const e = (await tryRequest(b, subject, { leaseId: lease.id, secret, ttlMs: 1000 })) as ShoalError;
        expect(e.code, `${subject} with secret ${secret}`).to.equal('LEASE_NOT_FOUND');
        expect(e.message).to.equal(unknown.message.replace('AAAAAAAAAAAAAAAAAAAAAA', lease.id));
      }
      const ex = (await tryRequest(b, s.leaseExec('n1'), { leaseId: lease.id, secret, op: 'echo', args: 'stolen' })) as ShoalError;
      expect(ex.code).to.equal('LEASE_NOT_FOUND');
    }
    // Still the holder's.
    expect(await lease.exec('echo', 'mine')).to.equal('mine');
    await lease.release();
  });

  it('lease ids are 128 random bits, not neighbours', async () => {
    const leases = await Promise.all(Array.from({ length: 2 }, () => sdkA.acquire(POOL, { timeoutMs: 5000, nodeId: 'n1' })));
    for (const l of leases) expect(l.id).to.match(/^[A-Za-z0-9_-]{22}$/);
    const [x, y] = leases.map((l) => Buffer.from(l.id, 'base64url'));
    let same = 0;
    for (let i = 0; i < 16; i++) if (x![i] === y![i]) same++;
    expect(same).to.be.below(8); // a ULID pair from one millisecond shares 15 of 16 bytes
    await Promise.all(leases.map((l) => l.release()));
  });

  it('no reflection: an exec whose reply or replyTo is not an inbox gets nothing, is counted, and drains nothing', async () => {
    // The client may publish on the node's exec subject, so it tries to make the node answer on its drain subject.
    b.publish(s.nodeExec('n1'), encode({ v: PROTOCOL_VERSION, pool: POOL, op: 'echo', timeoutMs: 1000, replyTo: s.nodeDrain('n1') }));
    b.publish(s.nodeAcquire('n1'), encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs: 1000 }), { reply: s.nodeDrain('n1') });
    b.publish(s.poolExec(POOL), encode({ v: PROTOCOL_VERSION, pool: POOL, op: 'echo', timeoutMs: 1000 }), { reply: s.nodeDrain('n1') });
    await b.flush();
    const metrics = await until('two refusals counted on the node', async () => {
      const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
      const m = /shoal_refused_messages_total\{reason="reply_not_inbox"[^}]*\} (\d+)/.exec(text);
      return m && Number(m[1]) >= 2 ? text : undefined;
    });
    expect(metrics).to.match(/reply_not_inbox/);
    await sleep(200);
    expect((await nodeStatus()).draining).to.equal(false);
    expect((await nodeStatus()).pools[POOL]!.active).to.equal(0);
  });

  it('every exec is bounded: a 5e6-chunk stream stops at its deadline and the node answers meanwhile; huge sleeps and deep args are BAD_REQUEST', async () => {
    const t0 = Date.now();
    const streaming = sdkA.exec(POOL, 'stream', { chunks: 5e6 }, { timeoutMs: 500, nodeId: 'n1' }).then(() => 'ok', (e: unknown) => (e as ShoalError).code ?? String(e));
    await sleep(150);
    const health = await fetch(`http://127.0.0.1:${node.httpPort}/healthz`).then((r) => r.status, (e: Error) => e.message);
    const healthAt = Date.now();
    const outcome = await streaming;
    expect(health).to.equal(200);
    expect(outcome).to.be.oneOf(['POOL_TIMEOUT', 'CANCELLED', 'UNAVAILABLE']);
    expect(healthAt - t0).to.be.below(5000); // "it did not hang": the node answered while the stream ran
    expect(((await sdkA.exec(POOL, 'sleep', { ms: 1e12 }, { timeoutMs: 3000 }).catch((e: unknown) => e)) as ShoalError).code).to.equal('BAD_REQUEST');
    // msgpack of args nested 2,000 deep (our own encoder would overflow first, so it is spliced in by hand).
    const deep = (body: Record<string, unknown>) => {
      const bytes = encode({ v: PROTOCOL_VERSION, ...body, args: 'PLACEHOLDER' });
      const at = Buffer.from(bytes).indexOf(Buffer.from([0xab, ...Buffer.from('PLACEHOLDER')]));
      return Buffer.concat([bytes.subarray(0, at), Buffer.alloc(2000, 0x91), Buffer.from([0xa1, 0x78]), bytes.subarray(at + 12)]);
    };
    const codeOf = async (subject: string, data: Uint8Array) => {
      try { return readReply((await a.request(subject, data, { timeout: 3000 })).data); } catch (e) { return (e as ShoalError).code; }
    };
    expect(await codeOf(s.poolExec(POOL), deep({ pool: POOL, op: 'echo', timeoutMs: 2000 }))).to.equal('BAD_REQUEST');
    const lease = await sdkA.acquire(POOL, { timeoutMs: 5000 });
    expect(await codeOf(s.leaseExec(lease.nodeId), deep({ leaseId: lease.id, secret: lease.info.secret, op: 'echo' }))).to.equal('BAD_REQUEST');
    await lease.release();
    // A client's mistakes are warnings without stack traces, not errors.
    for (const svc of [node, balancer]) {
      expect(svc.logs.filter((l) => l.level === 'error').map((l) => l.msg)).to.deep.equal([]);
      expect(svc.logs.filter((l) => /\n\s+at /.test(JSON.stringify(l)))).to.deep.equal([]);
    }
  });

  it('a pool-node watches its own weight in the settings bucket (weight 0 refuses a parked key\'s direct acquire) and writes none of it', async () => {
    const pn = await sec.connectAs('pool-node');
    try {
      const putErr = await pn.jetstream({ timeout: 2000 }).views.kv('shoal_settings', { bindOnly: true }).then((kv) => kv.put('weight.n1', JSON.stringify({ weight: 5 }))).then(() => undefined, (e: Error) => e);
      expect(putErr?.message).to.match(/permissions violation/i);
    } finally {
      await pn.close().catch(() => {});
    }
    await call(admin, s.adminWeight, { nodeId: 'n1', weight: 0 }, 3000);
    try {
      await until('n1 refusing onlyParked for its weight', async () => ((await tryRequest(a, s.nodeAcquire('n1'), { pool: POOL, park: 'k', onlyParked: true, timeoutMs: 500 })) as ShoalError).details?.reason === 'weight_0' ? true : undefined);
    } finally {
      await call(admin, s.adminWeight, { nodeId: 'n1', weight: 1 }, 3000);
    }
  });
});

describe('security: roles off (development mode) keeps today\'s open behaviour', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let node: Service & { nodeId: string };
  let nc: NatsConnection;

  before(async () => {
    nats = await startNatsServer();
    node = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 2, initial_size: 1 }), SHOAL_NODE_ID: 'open1' });
    const { connectNats } = await import('@shoal/runtime');
    nc = await connectNats({ servers: [nats.url], waitOnFirstConnect: false });
  });

  after(async () => {
    await nc?.close();
    await node?.kill('SIGKILL');
    await nats?.stop();
  });

  it('any connection may read heartbeats and steer a node (no authentication)', async () => {
    let heard = 0;
    nc.subscribe('>', { callback: (err, m) => { if (!err && m.subject === s.heartbeat('open1')) heard++; } });
    await until('a heartbeat read by anyone', () => (heard > 0 ? true : undefined));
    const r = await call<{ target: number }>(nc, s.nodeScale('open1'), { pool: POOL, op: 'target', n: 2 }, 3000);
    expect(r.target).to.equal(2);
  });
});
