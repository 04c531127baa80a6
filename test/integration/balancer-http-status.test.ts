import { expect } from 'chai';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { startPoolNode, startService, type Service } from '../helpers/procs.js';

/** The balancer process's HTTP status takes the status subject's paging query. */
describe('balancer HTTP status (paged)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  const procs: Service[] = [];
  let base: string;

  before(async () => {
    nats = await startNatsServer();
    for (const id of ['n1', 'n2', 'n3']) {
      procs.push(await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_NODE_ID: id, SHOAL_HEARTBEAT_INTERVAL: '200ms', SHOAL_POOL_SYNTHETIC_MIN_SIZE: '1', SHOAL_POOL_SYNTHETIC_INITIAL_SIZE: '1' }));
    }
    const b = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info' });
    procs.push(b);
    const line = await b.waitFor((l) => l.msg === 'listening');
    base = `http://127.0.0.1:${String(line.httpPort)}/api/v1/balancer/status`;
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await nats?.stop();
  });

  it('pages with limit and cursor, filters by node, and answers a bad query with 400 BAD_REQUEST', async () => {
    const get = async (q: string) => { const r = await fetch(`${base}${q}`); return { status: r.status, body: await r.json() as Record<string, any> }; };
    let r = await get('?limit=2');
    for (let i = 0; r.body.summary?.nodes !== 3 && i < 50; i++) { await new Promise((x) => setTimeout(x, 100)); r = await get('?limit=2'); }
    expect(r.status).to.equal(200);
    expect(r.body.summary.nodes).to.equal(3);
    expect(r.body.nodes.map((n: { nodeId: string }) => n.nodeId)).to.deep.equal(['n1', 'n2']);
    expect(r.body.page).to.deep.equal({ limit: 2, returned: 2, matched: 3, next: 'n2' });
    const next = await get('?limit=2&cursor=n2');
    expect(next.body.nodes.map((n: { nodeId: string }) => n.nodeId)).to.deep.equal(['n3']);
    expect(next.body.page.next).to.equal(null);
    expect((await get('?node=n2')).body.nodes.map((n: { nodeId: string }) => n.nodeId)).to.deep.equal(['n2']);
    for (const bad of ['?limit=lots', '?limit=5000', '?node=a.b']) {
      const e = await get(bad);
      expect(e.status, bad).to.equal(400);
      expect(e.body.error.code).to.equal('BAD_REQUEST');
    }
  });
});
