import { expect } from 'chai';
import { connect, type Client } from '@shoal/client';
import { connectNats, type NatsConnection } from '@shoal/runtime';
import { writeConfig } from '../helpers/cluster.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * A NATS outage longer than the nodes' gone window (5 × 200 ms): the
 * balancer used to age the nodes' silence while it was itself cut off, log
 * every node as gone, and answer NO_NODES after reconnecting until their
 * heartbeats came back. The client reconnects in a race with the balancer
 * (same reconnect policy): when it wins, its first acquires find nobody on
 * the pool's subject, and the SDK waits for a balancer instead of failing.
 */
describe('security: a NATS outage does not make the balancer forget its nodes (integration)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  const procs: Service[] = [];
  let balancer: Service;
  let nc: NatsConnection;
  let client: Client;

  before(async () => {
    nats = await startNatsServer({ jetstream: false });
    const cfg = writeConfig({ min_size: 2, max_size: 4, initial_size: 2 });
    for (const id of ['n1', 'n2']) procs.push(await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_NODE_ID: id }));
    balancer = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '0', SHOAL_BALANCER_ID: 'b1' });
    procs.push(balancer);
    await balancer.waitFor((l) => l.msg === 'listening');
    nc = await connectNats({ servers: [nats.url] });
    client = await connect({ nc });
  });

  after(async () => {
    await client?.close();
    await nc?.close();
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await nats?.stop();
  });

  it('after a 2 s outage every acquire made once reconnected succeeds, and no node was declared gone', async () => {
    await (await client.acquire('synthetic', { timeoutMs: 5000 })).release();
    const port = nats.port;
    let reconnected = false;
    void (async () => { for await (const st of nc.status()) if (st.type === 'reconnect') reconnected = true; })();
    await nats.stop();
    await sleep(2000);
    nats = await startNatsServer({ jetstream: false, port });
    const t0 = Date.now();
    while (!reconnected) {
      if (Date.now() - t0 > 15_000) throw new Error('the client did not reconnect');
      await sleep(10);
    }
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.acquire('synthetic', { timeoutMs: 8000 }).then((l) => l.release())));
    const failed = results.filter((r) => r.status === 'rejected').map((r) => `${String((r as PromiseRejectedResult).reason?.code ?? r)}: ${String((r as PromiseRejectedResult).reason?.message)}`);
    expect(failed).to.deep.equal([]);
    expect(balancer.logs.filter((l) => /node gone/.test(String(l.msg)))).to.deep.equal([]);
    expect(balancer.logs.some((l) => /reconnected; waiting for fresh heartbeats/.test(String(l.msg)))).to.equal(true);
  });
});
