import { expect } from 'chai';
import { ErrorCode as NatsErrorCode, type Msg, type NatsConnection } from 'nats';
import { decode, encode, fail, ok, PROTOCOL_VERSION, ShoalError, type Heartbeat, type PoolStats } from '@shoal/protocol';
import { silentLogger } from '@shoal/runtime';
import { Balancer } from '../../services/balancer/src/balancer.js';

/**
 * The balancer actor against an in-memory stand-in for NATS: nodes are
 * functions, so each test decides what a node answers, how late, or whether
 * anyone listens at all. Real processes are in test/integration/balancer.test.ts.
 */
type NodeAnswer = Uint8Array | 'hang' | 'no_responders';
type NodeFn = (body: Record<string, unknown>) => NodeAnswer | Promise<NodeAnswer>;
interface Sub { subject: string; queue?: string; callback: (err: unknown, m: Msg) => void }

function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  return p.length === s.length && p.every((t, i) => t === '*' || t === s[i]);
}

class FakeNats {
  readonly subs: Sub[] = [];
  readonly published: { subject: string; data: Uint8Array; reply?: string }[] = [];
  readonly requests: { subject: string; body: Record<string, unknown>; timeout: number }[] = [];
  readonly nodes = new Map<string, NodeFn>();

  subscribe(subject: string, opts: { queue?: string; callback: Sub['callback'] }) {
    const sub: Sub = { subject, queue: opts.queue, callback: opts.callback };
    this.subs.push(sub);
    return { drain: async () => { this.subs.splice(this.subs.indexOf(sub), 1); }, unsubscribe: () => {} };
  }

  async flush(): Promise<void> {}

  jetstream(): never {
    throw new Error('no JetStream here');
  }

  publish(subject: string, data: Uint8Array, opts?: { reply?: string }): void {
    this.published.push({ subject, data, reply: opts?.reply });
  }

  request(subject: string, data: Uint8Array, opts: { timeout: number }): Promise<Msg> {
    const body = decode(data);
    this.requests.push({ subject, body, timeout: opts.timeout });
    const fn = this.nodes.get(subject);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(Object.assign(new Error('TIMEOUT'), { code: NatsErrorCode.Timeout })), opts.timeout);
      if (!fn) { clearTimeout(timer); reject(Object.assign(new Error('503'), { code: NatsErrorCode.NoResponders })); return; }
      Promise.resolve(fn(body)).then((a) => {
        if (a === 'hang') return;
        clearTimeout(timer);
        if (a === 'no_responders') reject(Object.assign(new Error('503'), { code: NatsErrorCode.NoResponders }));
        else resolve({ subject, data: a } as Msg);
      });
    });
  }

  /** A message to the balancer, as a client sends it; resolves with the first message back on the reply subject. */
  send(subject: string, data: Uint8Array): { reply: string; answer: Promise<{ data: Uint8Array; ms: number }> } {
    const reply = `_INBOX.t${Math.random().toString(36).slice(2)}`;
    const t0 = Date.now();
    const answer = new Promise<{ data: Uint8Array; ms: number }>((resolve, reject) => {
      const poll = setInterval(() => {
        const got = this.published.find((p) => p.subject === reply);
        if (got) { clearInterval(poll); resolve({ data: got.data, ms: Date.now() - t0 }); }
        if (Date.now() - t0 > 3000) { clearInterval(poll); reject(new Error(`no answer on ${subject}`)); }
      }, 1);
    });
    this.deliver(subject, data, reply);
    return { reply, answer };
  }

  deliver(subject: string, data: Uint8Array, reply?: string): void {
    const msg = { subject, data, reply, respond: (d: Uint8Array) => { if (reply) this.publish(reply, d); return true; } } as unknown as Msg;
    const sub = this.subs.find((x) => matches(x.subject, subject));
    if (!sub) throw new Error(`nobody listens on ${subject}`);
    sub.callback(null, msg);
  }

  heartbeat(nodeId: string, o: Partial<Heartbeat> = {}, pool: Partial<PoolStats> = {}): void {
    const stats: PoolStats = {
      kind: 'synthetic', total: 2, idle: 2, active: 0, creating: 0, waiting: 0, min: 0, max: 4, target: 2, maxWaiting: 10,
      weight: 1, latencyMs: 1, execLatencyMs: 1, errorRate: 0, requestRate: 0, reuseRate: 0, memoryBytes: 0, available: true, ...pool,
    };
    const hb: Heartbeat = {
      v: PROTOCOL_VERSION, nodeId, seq: this.seq++, startedAt: 1, intervalMs: 1000, draining: false, host: 'h', pid: nodeId.length * 1000 + nodeId.charCodeAt(nodeId.length - 1),
      inFlight: 0, maxConcurrent: 100, cpu: 0, memory: { rss: 1, heapUsed: 1 }, pools: { p: stats }, ...o,
    };
    this.deliver(`shoal.hb.${nodeId}`, encode(hb));
  }

  private seq = 0;
}

const req = (body: Record<string, unknown>) => encode({ v: PROTOCOL_VERSION, ...body });
const reply = (data: Uint8Array) => decode(data) as { ok: boolean; data?: Record<string, unknown>; error?: { code: string; message: string } };
const lease = (nodeId: string) => encode(ok({ leaseId: `L-${nodeId}`, nodeId, pool: 'p', resourceId: 'r', expiresAt: 0, ttlMs: 1000, reused: false }));

describe('balancer actor (in-memory NATS)', () => {
  let nc: FakeNats;
  let b: Balancer;

  async function start(o: Partial<ConstructorParameters<typeof Balancer>[2]> = {}): Promise<void> {
    b = new Balancer(nc as unknown as NatsConnection, silentLogger, {
      prefix: 'shoal', strategy: 'round_robin', performanceWeights: { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 },
      suspectAfterIntervals: 3, goneAfterIntervals: 5, circuitFailureThreshold: 2, circuitCooldownMs: 60_000, warmupMs: 0, balancerId: 'b', ...o,
    });
    await b.start();
  }

  beforeEach(() => { nc = new FakeNats(); });
  afterEach(async () => { await b?.stop(100); });

  it('forwards the node reply bytes unchanged and hands the node the time left minus a margin', async () => {
    await start();
    const bytes = lease('a');
    nc.nodes.set('shoal.node.a.acquire', () => bytes);
    nc.heartbeat('a');
    const { answer } = nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 1000, holder: { client: 'x' }, extra: 'kept' }));
    expect((await answer).data).to.equal(bytes);
    const sent = nc.requests[0]!;
    expect(sent.body).to.include({ pool: 'p', extra: 'kept' });
    expect(sent.body.timeoutMs).to.be.within(940, 999);
    expect(sent.timeout).to.be.within(990, 1000);
  });

  it('tries another node after a refusal or no responders, and forwards a POOL_TIMEOUT as it is', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => encode(fail(new ShoalError('POOL_EXHAUSTED', 'full'))));
    // b has no subscriber: no responders
    nc.nodes.set('shoal.node.c.acquire', () => lease('c'));
    for (const id of ['a', 'b', 'c']) nc.heartbeat(id);
    const r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 1000 })).answer).data);
    expect(r.data!.nodeId).to.equal('c');
    expect(nc.requests.map((x) => x.subject).sort()).to.deep.equal(['shoal.node.a.acquire', 'shoal.node.b.acquire', 'shoal.node.c.acquire']);

    const timeout = encode(fail(new ShoalError('POOL_TIMEOUT', 'pool p: no resource')));
    nc.nodes.set('shoal.node.c.acquire', () => timeout);
    nc.nodes.set('shoal.node.a.acquire', () => timeout);
    const before = nc.requests.length;
    const got = await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 1000 })).answer;
    expect(got.data).to.equal(timeout);
    // One try (b's circuit is not yet open, so it may be the one refused first).
    expect(nc.requests.length - before).to.be.within(1, 2);
  });

  it('never answers later than the deadline, even when the node never does', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => 'hang');
    nc.heartbeat('a');
    const got = await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 200 })).answer;
    expect(got.ms).to.be.within(150, 230);
    const r = reply(got.data);
    expect(r.error!.code).to.equal('UNAVAILABLE');
    expect(r.error!.message).to.contain('no answer in time');
  });

  it('opens the circuit of a node that keeps failing and stops trying it', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => lease('a'));
    nc.heartbeat('a');
    nc.heartbeat('z'); // never answers: no responders
    for (let i = 0; i < 6; i++) {
      const r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 500 })).answer).data);
      expect(r.ok).to.equal(true);
    }
    expect(nc.requests.filter((x) => x.subject === 'shoal.node.z.acquire').length).to.equal(2);
    expect(b.status().nodes.find((n) => n.nodeId === 'z')!.circuit).to.equal('open');
  });

  it('says why nothing can be placed: no nodes, no such pool, or none eligible', async () => {
    await start();
    let r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 100 })).answer).data);
    expect(r.error).to.include({ code: 'NO_NODES' });
    nc.heartbeat('a', { draining: true });
    r = reply((await nc.send('shoal.q.acquire', req({ pool: 'q', timeoutMs: 100 })).answer).data);
    expect(r.error!.code).to.equal('POOL_NOT_FOUND');
    expect(r.error!.message).to.contain('no known node has pool q');
    r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 100 })).answer).data);
    expect(r.error!.code).to.equal('NO_NODES');
    expect(r.error!.message).to.contain('1 draining');
  });

  it('answers bad requests with BAD_REQUEST and keeps serving', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => lease('a'));
    nc.heartbeat('a');
    for (const bad of [new Uint8Array([0xc1]), req({ pool: 'p' }), req({ pool: 'other', timeoutMs: 10 }), req({ pool: 'p', timeoutMs: 1.5 })]) {
      expect(reply((await nc.send('shoal.p.acquire', bad).answer).data).error!.code).to.equal('BAD_REQUEST');
    }
    expect(reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 100 })).answer).data).ok).to.equal(true);
  });

  it('forwards a one-shot exec to one node with the caller reply subject, bytes untouched', async () => {
    await start();
    nc.heartbeat('a');
    const data = req({ pool: 'p', timeoutMs: 1000, op: 'stream', args: { chunks: 3 } });
    const { reply: inbox } = nc.send('shoal.p.exec', data);
    await new Promise((r) => setTimeout(r, 5));
    const fwd = nc.published.find((p) => p.subject === 'shoal.node.a.exec')!;
    expect(fwd.reply).to.equal(inbox);
    expect(fwd.data).to.equal(data);
    expect(nc.requests).to.deep.equal([]);
  });

  it('prefers nodes whose pool is available, and counts a granted lease until a heartbeat shows it', async () => {
    await start({ strategy: 'least_connections' });
    nc.nodes.set('shoal.node.a.acquire', () => lease('a'));
    nc.nodes.set('shoal.node.b.acquire', () => lease('b'));
    nc.heartbeat('a', {}, { available: false, reason: 'creates failing' });
    nc.heartbeat('b');
    for (let i = 0; i < 3; i++) await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 100 })).answer;
    expect(nc.requests.map((x) => x.subject)).to.deep.equal(Array(3).fill('shoal.node.b.acquire'));
    expect(b.status().nodes.find((n) => n.nodeId === 'b')!.inFlight).to.equal(3);
    nc.heartbeat('b', {}, { active: 3, idle: 0, total: 3 });
    expect(b.status().nodes.find((n) => n.nodeId === 'b')!.inFlight).to.equal(0);
  });
});
