import { expect } from 'chai';
import { connect as natsConnect, type Msg, type NatsConnection, type Subscription } from 'nats';
import { connect, NotParkedError, type Client } from '@shoal/client';
import { decode, encode, ErrorCodes, fail, ok, PROTOCOL_VERSION, ShoalError, subjects } from '@shoal/protocol';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, until } from '../helpers/procs.js';

/**
 * The SDK's direct try at the node a key was parked on, and its fallback, as
 * the wire shows them: a pretend node and a pretend balancer on a real
 * nats-server answer exactly as chosen (a slow refusal, a late grant), which
 * real processes do only by chance. What is checked is what the SDK sends.
 */
const s = subjects('shoal');
const POOL = 'chat';
const lease = (nodeId: string, park?: string) => ({ leaseId: `L-${Math.random().toString(36).slice(2)}`, secret: 'sec', nodeId, pool: POOL, resourceId: 'r1', expiresAt: Date.now() + 60_000, ttlMs: 60_000, reused: true, ...(park ? { park } : {}) });

describe('SDK and parked keys on the wire (pretend node and balancer, real nats-server)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let client: Client;
  let nc: NatsConnection;
  const subs: Subscription[] = [];
  const on = (subject: string, fn: (m: Msg, body: Record<string, unknown>) => void) => {
    subs.push(nc.subscribe(subject, { callback: (_e, m) => fn(m, decode(m.data)) }));
  };

  before(async () => {
    nats = await startNatsServer();
    nc = await natsConnect({ servers: nats.url });
  });
  beforeEach(async () => {
    client = await connect({ servers: [nats.url], name: 'sdk-park', autoRenew: false });
  });
  afterEach(async () => {
    for (const sub of subs.splice(0)) sub.unsubscribe();
    await client?.close();
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('remembers the node only when the release says it parked there (no NOT_PARKED round trip after a release that did not park)', async () => {
    const direct: unknown[] = [];
    let parks = false;
    on(s.nodeAcquire('pretend'), (m, b) => {
      if (b.onlyParked) { direct.push(b); m.respond(encode(fail(new ShoalError(ErrorCodes.NOT_PARKED, 'not here')))); return; }
      m.respond(encode(ok(lease('pretend'))));
    });
    on(s.leaseRelease('pretend'), (m, b) => m.respond(encode(ok(parks ? { released: b.leaseId, parked: true } : { released: b.leaseId }))));
    on(s.poolAcquire(POOL), (m) => m.respond(encode(ok(lease('pretend', 'gone')))));
    await nc.flush();
    // max_parked 0 (or a draining node): the release is an ordinary one, and says so.
    let l = await client.acquire(POOL, { nodeId: 'pretend' });
    await l.release({ park: 'k1' });
    l = await client.acquire(POOL, { park: 'k1', timeoutMs: 5000 });
    expect(direct, 'no direct try after a release that did not park').to.have.length(0);
    // It parked: the next acquire with the key asks that node first.
    parks = true;
    await l.release({ park: 'k1' });
    l = await client.acquire(POOL, { park: 'k1', timeoutMs: 5000 });
    expect(direct).to.have.length(1);
    expect(l.parked).to.equal('gone');
    await l.release();
  });

  it('a one-shot refused POOL_BUSY by the parked node goes through a balancer, with what is left of its acquire budget', async () => {
    const tried: Record<string, unknown>[] = [];
    on(s.nodeExec('pretend'), (m, b) => {
      tried.push(b);
      // A busy node, after a while (e.g. a return waited for): nothing ran.
      setTimeout(() => m.respond(encode(fail(new ShoalError(ErrorCodes.POOL_BUSY, 'busy')))), 1500);
    });
    let sent: Record<string, unknown> | undefined;
    on(s.poolExec(POOL), (m, b) => { sent = b; m.respond(encode({ v: PROTOCOL_VERSION, ok: true, seq: -1, done: true, result: 'ran' })); });
    await nc.flush();
    client.parkedOn(POOL, 'k2', 'pretend');
    const r = await client.exec(POOL, 'send', {}, { park: 'k2', timeoutMs: 4000, execTimeoutMs: 1000 });
    expect(r).to.equal('ran');
    expect(tried).to.have.length(1);
    expect(tried[0]!.onlyParked).to.equal(true);
    expect(sent?.onlyParked).to.equal(undefined);
    // 4 s less the 1.5 s spent at the node (and the reply margin): not the whole 4 s again.
    expect(sent?.timeoutMs as number).to.be.at.most(4000 - 1500);
    expect(sent?.timeoutMs as number).to.be.greaterThan(0);
  });

  it('a keyed lease granted after the caller gave up goes back parked under the key when it held the conversation', async () => {
    const released: Record<string, unknown>[] = [];
    on(s.nodeAcquire('pretend'), (m, b) => {
      // The parked session, granted just after the caller's deadline.
      setTimeout(() => m.respond(encode(ok(lease('pretend', b.onlyParked ? 'hit' : 'gone')))), 700);
    });
    on(s.leaseRelease('pretend'), (m, b) => { released.push(b); m.respond(encode(ok({ released: b.leaseId }))); });
    await nc.flush();
    client.parkedOn(POOL, 'k3', 'pretend');
    const err = await client.acquire(POOL, { park: 'k3', timeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
    expect((err as ShoalError)?.code).to.be.oneOf(['UNAVAILABLE', 'POOL_TIMEOUT']);
    await until('the late lease was given back', async () => released.length === 1, 10_000);
    expect(released[0]!.park).to.equal('k3');

    // Aborted while waiting: the lease that comes anyway goes back parked too.
    client.parkedOn(POOL, 'k3', 'pretend');
    const ac = new AbortController();
    const p = client.acquire(POOL, { park: 'k3', timeoutMs: 5000, signal: ac.signal }).then(() => undefined, (e: unknown) => e);
    await sleep(100);
    ac.abort();
    expect((await p as ShoalError)?.code).to.equal('CANCELLED');
    await until('the aborted lease was given back', async () => released.length === 2, 10_000);
    expect(released[1]!.park).to.equal('k3');
  });

  it('NOT_PARKED is retryable, also when built locally', () => {
    expect(new NotParkedError(ErrorCodes.NOT_PARKED, 'x').retryable).to.equal(true);
    expect(new ShoalError(ErrorCodes.NOT_PARKED, 'x').toWire().retryable).to.equal(true);
  });
});
