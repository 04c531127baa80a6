import { expect } from 'chai';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { connect, type Client } from '@shoal/client';
import { decode, subjects } from '@shoal/protocol';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { startPoolNode, startService, type Service } from '../helpers/procs.js';
import { writeConfig } from '../helpers/cluster.js';

/**
 * The balancer's exec modes as seen on the wire, with a pool-node and a
 * balancer process: `relay` (SHOAL_BALANCER_EXEC_MODE=relay) asks the node on
 * the balancer's own inbox and copies every message back; `forward` (the
 * default) hands the caller's inbox to the node. Both give the SDK the same
 * events, result and typed errors.
 */
const s = subjects('shoal');

describe('balancer exec modes (integration: relay and forward on the wire)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let client: Client;
  let tap: NatsConnection;
  const procs: Service[] = [];
  /** What reached the node's exec subject: the body's replyTo and the message's reply subject. */
  const seen: { replyTo?: unknown; reply?: string }[] = [];
  let nodeId: string;

  before(async () => {
    nats = await startNatsServer();
    client = await connect({ servers: [nats.url], name: 'relay-it' });
    tap = await natsConnect({ servers: nats.url });
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_NODE_ID: 'rn1', SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 2, initial_size: 1 }) });
    procs.push(n);
    nodeId = n.nodeId;
    // A plain subscriber beside the node's own: NATS gives it a copy of each request.
    tap.subscribe(s.nodeExec(nodeId), { callback: (_e, m) => { seen.push({ replyTo: decode(m.data).replyTo, reply: m.reply }); } });
    await tap.flush();
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await client?.close();
    await tap?.close();
    await nats?.stop();
  });

  async function balancer(mode: 'relay' | 'forward'): Promise<Service> {
    const b = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info', SHOAL_BALANCER_EXEC_MODE: mode });
    procs.push(b);
    await b.waitFor((l) => l.msg === 'listening');
    return b;
  }

  /** A stream exec through the balancer, with its events, result and what the node was sent. */
  async function streamExec() {
    seen.length = 0;
    const call = client.exec('synthetic', 'stream', { chunks: 4 }, { timeoutMs: 10_000 });
    const events: unknown[] = [];
    for await (const e of call) events.push(e);
    return { events, result: await call.result, sent: [...seen] };
  }

  /** Retry until the balancer has heard the node's heartbeat (before that: POOL_NOT_FOUND, nothing else). */
  async function whenKnown<T>(fn: () => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      try { return await fn(); } catch (err) {
        if ((err as { code?: string }).code !== 'POOL_NOT_FOUND' || i > 200) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  it('relay: the node answers the balancer\'s inbox, the caller still gets every event, the result and typed errors', async () => {
    const b = await balancer('relay');
    const r = await whenKnown(streamExec);
    expect(r.events).to.deep.equal([{ chunk: 0 }, { chunk: 1 }, { chunk: 2 }, { chunk: 3 }]);
    expect(r.result).to.deep.equal({ chunks: 4 });
    expect(r.sent).to.have.length(1);
    expect(r.sent[0]!.replyTo).to.equal(undefined);
    expect(r.sent[0]!.reply).to.be.a('string');
    const err = await client.exec('synthetic', 'fail', { message: 'relayed boom' }, { timeoutMs: 10_000 }).then(() => null, (e: unknown) => e as { code: string; message: string });
    expect(err?.code).to.equal('DRIVER_ERROR');
    expect(err?.message).to.contain('relayed boom');
    await b.kill('SIGTERM');
  });

  it('forward (default): the node is handed the caller\'s inbox and streams straight to it', async () => {
    const b = await balancer('forward');
    const r = await whenKnown(streamExec);
    expect(r.events).to.deep.equal([{ chunk: 0 }, { chunk: 1 }, { chunk: 2 }, { chunk: 3 }]);
    expect(r.result).to.deep.equal({ chunks: 4 });
    expect(r.sent).to.have.length(1);
    expect(r.sent[0]!.replyTo).to.be.a('string').and.to.match(/^_INBOX\./);
    await b.kill('SIGTERM');
  });

  it('refuses an unknown exec mode at start-up, naming the variable', async () => {
    const b = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_BALANCER_EXEC_MODE: 'teleport' });
    procs.push(b);
    expect(await b.exited).to.equal(2);
    expect(b.stderr).to.contain('SHOAL_BALANCER_EXEC_MODE').and.contain('teleport');
  });
});
