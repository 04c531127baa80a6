import { expect } from 'chai';
import { connect, type Msg, type NatsConnection, type Subscription } from 'nats';
import { decode, encode, fail, ok, PROTOCOL_VERSION, ShoalError, type Heartbeat, type PoolStats } from '@shoal/protocol';
import { silentLogger } from '@shoal/runtime';
import { Balancer } from '../../services/balancer/src/balancer.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

/**
 * The balancer actor in-process on a real nats-server, with pretend nodes as
 * subscribers in the test: each test decides what a node answers, how late,
 * or whether anyone listens at all (no subscriber = no responders). Whole
 * processes are in test/integration/balancer.test.ts.
 */
type NodeAnswer = Uint8Array | 'hang';
type NodeFn = (body: Record<string, unknown>) => NodeAnswer | Promise<NodeAnswer>;

class Harness {
  readonly requests: { subject: string; body: Record<string, unknown> }[] = [];
  private readonly fns = new Map<string, NodeFn>();
  private readonly subs: Subscription[] = [];
  private seq = 0;
  readonly nodes = {
    set: (subject: string, fn: NodeFn) => {
      if (!this.fns.has(subject)) {
        this.subs.push(this.tc.subscribe(subject, {
          callback: (_e, m: Msg) => {
            const body = decode(m.data);
            this.requests.push({ subject, body });
            void Promise.resolve(this.fns.get(subject)!(body)).then((a) => { if (a !== 'hang') m.respond(a); });
          },
        }));
      }
      this.fns.set(subject, fn);
    },
  };

  /** The balancer under test, to see when it has taken a heartbeat in. */
  balancer: Balancer | undefined;

  constructor(readonly tc: NatsConnection) {}

  async ready(): Promise<void> { await this.tc.flush(); }

  /** A request to the balancer as a client sends it; resolves with the first message back. */
  send(subject: string, data: Uint8Array): { reply: string; answer: Promise<{ data: Uint8Array; ms: number }> } {
    const reply = `_INBOX.t${Math.random().toString(36).slice(2)}`;
    const t0 = Date.now();
    const sub = this.tc.subscribe(reply, { max: 1 });
    const answer = (async () => {
      const timer = setTimeout(() => sub.unsubscribe(), 3000);
      for await (const m of sub) { clearTimeout(timer); return { data: m.data, ms: Date.now() - t0 }; }
      throw new Error(`no answer on ${subject}`);
    })();
    this.tc.publish(subject, data, { reply });
    return { reply, answer };
  }

  async heartbeat(nodeId: string, o: Partial<Heartbeat> = {}, pool: Partial<PoolStats> = {}): Promise<void> {
    const stats: PoolStats = {
      kind: 'synthetic', total: 2, idle: 2, active: 0, creating: 0, waiting: 0, min: 0, max: 4, target: 2, maxWaiting: 10,
      weight: 1, latencyMs: 1, execLatencyMs: 1, errorRate: 0, requestRate: 0, reuseRate: 0, memoryBytes: 0, available: true, ...pool,
    };
    const hb: Heartbeat = {
      v: PROTOCOL_VERSION, nodeId, seq: this.seq++, startedAt: 1, intervalMs: 1000, draining: false, host: 'h', pid: nodeId.length * 1000 + nodeId.charCodeAt(nodeId.length - 1),
      inFlight: 0, maxConcurrent: 100, cpu: 0, memory: { rss: 1, heapUsed: 1 }, pools: { p: stats }, ...o,
    };
    this.tc.publish(`shoal.hb.${nodeId}`, encode(hb));
    await this.tc.flush();
    // Until the balancer's status shows this heartbeat (not a guessed sleep).
    const want = JSON.stringify(hb.pools);
    for (const end = Date.now() + 10_000; ;) {
      const n = this.balancer?.status().nodes.find((x) => x.nodeId === nodeId);
      if (n && n.draining === hb.draining && JSON.stringify(n.pools) === want) return;
      if (Date.now() > end) throw new Error(`the balancer never took in the heartbeat of ${nodeId}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  close(): void { for (const s of this.subs) s.unsubscribe(); }
}

const req = (body: Record<string, unknown>) => encode({ v: PROTOCOL_VERSION, ...body });
const reply = (data: Uint8Array) => decode(data) as { ok: boolean; data?: Record<string, unknown>; error?: { code: string; message: string } };
const lease = (nodeId: string) => encode(ok({ leaseId: `L-${nodeId}`, nodeId, pool: 'p', resourceId: 'r', expiresAt: 0, ttlMs: 1000, reused: false }));

describe('balancer actor (in-process, real nats-server, pretend nodes)', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let bnc: NatsConnection;
  let nc: Harness;
  let b: Balancer;
  let bucket = 0;

  before(async () => { server = await startNatsServer(); });
  after(async () => { await server?.stop(); });

  async function start(o: Partial<ConstructorParameters<typeof Balancer>[2]> = {}): Promise<void> {
    b = new Balancer(bnc, silentLogger, {
      prefix: 'shoal', strategy: 'round_robin', performanceWeights: { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 },
      suspectAfterIntervals: 3, goneAfterIntervals: 5, circuitFailureThreshold: 2, circuitCooldownMs: 60_000, warmupMs: 0, balancerId: 'b',
      settingsBucket: `test_settings_${bucket++}`, ...o,
    });
    await b.start();
    nc.balancer = b;
    await nc.ready();
  }

  /** Placements the balancer counted for a node and result, from its own metrics. */
  async function tries(node: string, result: string): Promise<number> {
    const text = await b.metrics.registry.metrics();
    let n = 0;
    for (const line of text.split('\n')) if (line.startsWith('shoal_balancer_placements_total{') && line.includes(`node="${node}"`) && line.includes(`result="${result}"`)) n += Number(line.split(' ').pop());
    return n;
  }

  beforeEach(async () => {
    bnc = await connect({ servers: server.url, noAsyncTraces: true });
    nc = new Harness(await connect({ servers: server.url }));
  });
  afterEach(async () => {
    await b?.stop(100);
    nc.close();
    await nc.tc.close();
    await bnc.close();
  });

  it('forwards the node reply bytes unchanged and hands the node the time left minus a margin', async () => {
    await start();
    const bytes = lease('a');
    nc.nodes.set('shoal.node.a.acquire', () => bytes);
    await nc.heartbeat('a');
    const { answer } = nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 1000, holder: { client: 'x' }, extra: 'kept' }));
    expect((await answer).data).to.deep.equal(bytes);
    const sent = nc.requests[0]!;
    expect(sent.body).to.include({ pool: 'p', extra: 'kept' });
    expect(sent.body.timeoutMs).to.be.within(850, 980); // the time left minus a 10 % margin (20-250 ms)
  });

  it('tries another node after a refusal or no responders, and forwards a POOL_TIMEOUT as it is', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => encode(fail(new ShoalError('POOL_EXHAUSTED', 'full'))));
    // b has no subscriber: no responders
    nc.nodes.set('shoal.node.c.acquire', () => lease('c'));
    for (const id of ['a', 'b', 'c']) await nc.heartbeat(id);
    const r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 1000 })).answer).data);
    expect(r.data!.nodeId).to.equal('c');
    expect(nc.requests.map((x) => x.subject).sort()).to.deep.equal(['shoal.node.a.acquire', 'shoal.node.c.acquire']);
    expect(await tries('b', 'unreachable')).to.equal(1); // b has no subscriber: no responders, then c

    const timeout = encode(fail(new ShoalError('POOL_TIMEOUT', 'pool p: no resource')));
    nc.nodes.set('shoal.node.c.acquire', () => timeout);
    nc.nodes.set('shoal.node.a.acquire', () => timeout);
    const before = nc.requests.length;
    const got = await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 1000 })).answer;
    expect(got.data).to.deep.equal(timeout);
    // One try that reached a node (b's circuit is not yet open, so it may have been tried first).
    expect(nc.requests.length - before).to.equal(1);
  });

  it('never answers later than the deadline, even when the node never does', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => 'hang');
    await nc.heartbeat('a');
    const got = await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 200 })).answer;
    // Not before the deadline; after it only by a loaded machine's slack, far from the caller's own 3 s give-up.
    expect(got.ms).to.be.within(150, 1500);
    const r = reply(got.data);
    expect(r.error!.code).to.equal('UNAVAILABLE');
    // Its deadline, or first the liveness check (this pretend node does not answer its status either).
    expect(r.error!.message).to.match(/no answer in time|stopped answering/);
  });

  it('opens the circuit of a node that keeps failing and stops trying it', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => lease('a'));
    await nc.heartbeat('a');
    await nc.heartbeat('z'); // never answers: no responders
    for (let i = 0; i < 6; i++) {
      const r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 500 })).answer).data);
      expect(r.ok).to.equal(true);
    }
    expect(await tries('z', 'unreachable')).to.equal(2);
    expect(b.status().nodes.find((n) => n.nodeId === 'z')!.circuit).to.equal('open');
  });

  it('does not open the circuit of a busy node that still heartbeats when its answers come late', async () => {
    await start();
    nc.nodes.set('shoal.node.a.acquire', () => 'hang');
    // Busy, not hung: it answers the balancer's liveness check (its status) at once.
    nc.nodes.set('shoal.node.a.status', () => encode(ok({ nodeId: 'a' })));
    await nc.heartbeat('a');
    for (let i = 0; i < 4; i++) {
      const r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 150 })).answer).data);
      expect(r.error!.code).to.equal('UNAVAILABLE');
    }
    expect(b.status().nodes.find((n) => n.nodeId === 'a')!.circuit).to.equal('closed');
    nc.nodes.set('shoal.node.a.acquire', () => lease('a'));
    expect(reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 500 })).answer).data).ok).to.equal(true);
  });

  it('never runs a one-shot exec twice: an unconfirmed hand-off is not retried elsewhere, and a client replyTo is replaced', async () => {
    await start();
    nc.nodes.set('shoal.node.a.exec', () => 'hang'); // got it, never confirms: it may be running
    nc.nodes.set('shoal.node.b.exec', (body) => {
      nc.tc.publish(String(body.replyTo), encode({ v: PROTOCOL_VERSION, ok: true, seq: -1, done: true, result: 'b' }));
      return encode(ok({ accepted: true, nodeId: 'b' }));
    });
    await nc.heartbeat('a', {}, { idle: 2 });
    await nc.heartbeat('b', {}, { idle: 0 }); // a has idle capacity: it is picked first
    const r = reply((await nc.send('shoal.p.exec', req({ pool: 'p', timeoutMs: 300, op: 'x' })).answer).data);
    expect(r.error!.code).to.equal('UNAVAILABLE');
    expect(r.error!.message).to.contain('may have run');
    expect(nc.requests.filter((x) => x.subject === 'shoal.node.b.exec')).to.have.length(0);

    nc.nodes.set('shoal.node.a.exec', (body) => {
      nc.tc.publish(String(body.replyTo), encode({ v: PROTOCOL_VERSION, ok: true, seq: -1, done: true, result: 'a' }));
      return encode(ok({ accepted: true, nodeId: 'a' }));
    });
    const { reply: inbox, answer } = nc.send('shoal.p.exec', req({ pool: 'p', timeoutMs: 1000, op: 'x', replyTo: 'shoal.admin.victim' }));
    await answer;
    const last = nc.requests.filter((x) => x.subject.endsWith('.exec')).at(-1)!;
    expect(last.body.replyTo).to.equal(inbox);
  });

  it('says why nothing can be placed: no nodes, no such pool, or none eligible', async () => {
    await start();
    let r = reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 100 })).answer).data);
    expect(r.error).to.include({ code: 'NO_NODES' });
    await nc.heartbeat('a', { draining: true });
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
    await nc.heartbeat('a');
    // (No timeoutMs is not bad: the pool's acquire_timeout applies.)
    for (const bad of [new Uint8Array([0xc1]), req({ pool: 'p', timeoutMs: 0 }), req({ pool: 'other', timeoutMs: 10 }), req({ pool: 'p', timeoutMs: 1.5 })]) {
      expect(reply((await nc.send('shoal.p.acquire', bad).answer).data).error!.code).to.equal('BAD_REQUEST');
    }
    expect(reply((await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 100 })).answer).data).ok).to.equal(true);
  });

  it('hands a one-shot exec over: the node accepts, then streams straight to the caller; a refusal is tried elsewhere', async () => {
    await start();
    nc.nodes.set('shoal.node.a.exec', () => encode(fail(new ShoalError('NODE_DRAINING', 'draining'))));
    nc.nodes.set('shoal.node.b.exec', (body) => {
      // The pretend node streams its final message to the caller's inbox, then tells the balancer it took the call.
      nc.tc.publish(String(body.replyTo), encode({ v: PROTOCOL_VERSION, ok: true, seq: -1, done: true, result: { from: 'b' } }));
      return encode(ok({ accepted: true, nodeId: 'b' }));
    });
    await nc.heartbeat('a');
    await nc.heartbeat('b');
    const { reply: inbox, answer } = nc.send('shoal.p.exec', req({ pool: 'p', timeoutMs: 1000, op: 'stream', args: { chunks: 3 } }));
    const final = decode((await answer).data) as { done: boolean; result: unknown };
    expect(final).to.include({ done: true });
    expect(final.result).to.deep.equal({ from: 'b' });
    const toB = nc.requests.find((r) => r.subject === 'shoal.node.b.exec')!;
    expect(toB.body).to.include({ replyTo: inbox, op: 'stream' });
  });

  it('prefers nodes whose pool is available, and counts a granted lease until a heartbeat shows it', async () => {
    await start({ strategy: 'least_connections' });
    nc.nodes.set('shoal.node.a.acquire', () => lease('a'));
    nc.nodes.set('shoal.node.b.acquire', () => lease('b'));
    await nc.heartbeat('a', {}, { available: false, reason: 'creates failing' });
    await nc.heartbeat('b');
    for (let i = 0; i < 3; i++) await nc.send('shoal.p.acquire', req({ pool: 'p', timeoutMs: 100 })).answer;
    expect(nc.requests.map((x) => x.subject)).to.deep.equal(Array(3).fill('shoal.node.b.acquire'));
    expect(b.status().nodes.find((n) => n.nodeId === 'b')!.inFlight).to.equal(3);
    await nc.heartbeat('b', {}, { active: 3, idle: 0, total: 3 });
    expect(b.status().nodes.find((n) => n.nodeId === 'b')!.inFlight).to.equal(0);
  });
});
