import { expect } from 'chai';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { encode, readReply, subjects } from '@shoal/protocol';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { orHung, startPoolNode, startService, type Service } from '../helpers/procs.js';
import { writeConfig } from '../helpers/cluster.js';

/**
 * A program that closes its SDK client must be able to exit: nothing the SDK
 * made (its NATS connection and reconnect loop, request timers, renew and
 * node-watch timers) may keep the process alive after close(). Each case is a
 * real child process that must end by itself.
 */
const s = subjects('shoal');
/** Generous: the meaning is "it did not hang", not a speed. */
const EXIT_BOUND_MS = 15_000;

async function exitsByItself(p: Service): Promise<number | null> {
  const code = await orHung(p.exited, EXIT_BOUND_MS);
  if (code === 'hung') {
    await p.kill('SIGKILL');
    throw new Error(`the process was still running ${EXIT_BOUND_MS} ms after close(); stderr: ${p.stderr.slice(-2000)}`);
  }
  return code;
}

describe('SDK close() lets the process exit (integration: real nats-server, child processes)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  let nc: NatsConnection | undefined;
  const procs: Service[] = [];
  const child = (scenario: string, ...args: string[]) => {
    const p = startService('test/fixtures/sdk-close.mjs', {}, [nats.url, scenario, ...args]);
    procs.push(p);
    return p;
  };

  beforeEach(async () => { nats = await startNatsServer(); });
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
    await nc?.close();
    nc = undefined;
    await nats.stop();
  });

  it('closed while NATS is down: the connection stops reconnecting and the process exits', async () => {
    const p = child('nats-down');
    await p.waitFor((l) => l.msg === 'connected');
    await nats.stop();
    await p.waitFor((l) => l.msg === 'closed');
    expect(await exitsByItself(p)).to.equal(0);
  });

  it('closed while an acquire waits: the acquire fails at once (UNAVAILABLE, closed), not at its 5 min deadline, and the process exits', async () => {
    nc = await natsConnect({ servers: nats.url });
    let heard = 0;
    // A balancer that never answers: the acquire has somebody to wait for.
    nc.subscribe(s.poolAcquire('synthetic'), { callback: () => { heard++; } });
    await nc.flush();
    const p = child('acquire-waits');
    const closed = await p.waitFor((l) => l.msg === 'closed');
    // Delivery to this listener and the child's line travel apart: wait for the one before counting.
    for (const end = Date.now() + 5000; heard === 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 20));
    expect(heard, 'the acquire reached a listener').to.equal(1);
    expect(closed.acquire).to.deep.equal({ code: 'UNAVAILABLE', reason: 'closed' });
    expect(await exitsByItself(p)).to.equal(0);
  });

  it('closed while holding a lease that ran an exec: released, and the process exits', async () => {
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 1, initial_size: 1 }) });
    procs.push(n);
    const p = child('leased', n.nodeId);
    await p.waitFor((l) => l.msg === 'closed');
    expect(await exitsByItself(p)).to.equal(0);
    expect(await activeOn(n.nodeId), 'the lease was released, not left to expire').to.equal(0);
  });

  it('close() twice at once (a signal handler and a finally): both return and the process exits; with a lease held, it is released', async () => {
    const bare = child('twice');
    await bare.waitFor((l) => l.msg === 'closed');
    expect(await exitsByItself(bare)).to.equal(0);
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 1, initial_size: 1 }) });
    procs.push(n);
    const held = child('twice', n.nodeId);
    await held.waitFor((l) => l.msg === 'closed');
    expect(await exitsByItself(held)).to.equal(0);
    expect(await activeOn(n.nodeId)).to.equal(0);
  });

  /** Leases active on the node's synthetic pool, from its status (a 60 s lease would still be active had close() not released it). */
  async function activeOn(nodeId: string): Promise<number> {
    nc ??= await natsConnect({ servers: nats.url });
    const m = await nc.request(s.nodeStatus(nodeId), encode({ v: 1 }), { timeout: 3000 });
    return readReply<{ pools: Record<string, { active: number }> }>(m.data).pools.synthetic!.active;
  }
});
