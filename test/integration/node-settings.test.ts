import { expect } from 'chai';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { connect, type Client } from '@shoal/client';
import { subjects } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { startPoolNode, startService, until, type Service } from '../helpers/procs.js';
import { writeConfig } from '../helpers/cluster.js';

/**
 * The node.* keys that only a node process can show: each test starts a
 * pool-node with the key set (through its environment variable, the same
 * config key) and checks what changes against the default.
 */
const sub = subjects('shoal');

describe('node settings (integration: pool-node process, real nats-server)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let client: Client;
  let nc: NatsConnection;
  const services: Service[] = [];
  const clients: Client[] = [];

  before(async () => {
    nats = await startNatsServer();
    client = await connect({ servers: [nats.url], name: 'node-settings' });
    nc = await natsConnect({ servers: nats.url });
  });
  after(async () => {
    await client?.close();
    await nc?.close();
    await nats?.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(services.splice(0).map((x) => x.kill('SIGKILL')));
  });

  async function node(pool: Record<string, unknown>, env: Record<string, string> = {}) {
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig(pool), ...env });
    services.push(n);
    return n;
  }

  it('node.prefix: a node under another prefix serves clients of that prefix only', async () => {
    const n = await node({ min_size: 1, max_size: 1, initial_size: 1 }, { SHOAL_PREFIX: 'acme' });
    const acme = await connect({ servers: [nats.url], name: 'acme', prefix: 'acme' });
    clients.push(acme);
    expect(await acme.exec('synthetic', 'echo', 'via acme', { nodeId: n.nodeId })).to.equal('via acme');
    const lease = await acme.acquire('synthetic', { nodeId: n.nodeId });
    await lease.release();
    // The default prefix reaches nothing there.
    const err = await client.exec('synthetic', 'echo', 'via shoal', { nodeId: n.nodeId, timeoutMs: 1500 }).then(() => undefined, (e: unknown) => e);
    expect(err, 'a default-prefix client was served by an acme node').to.be.instanceOf(Error);
  });

  it('node.http_host: the status server binds that address only', async () => {
    const n = await node({ min_size: 0, max_size: 1, initial_size: 0 }, { SHOAL_HTTP_HOST: '127.0.0.2' });
    expect(n.httpPort).to.be.a('number');
    const ok = await fetch(`http://127.0.0.2:${n.httpPort}/healthz`);
    expect(ok.status).to.equal(200);
    const other = await fetch(`http://127.0.0.1:${n.httpPort}/healthz`).then(() => undefined, (e: unknown) => e);
    expect(other, 'the default address answered too').to.be.instanceOf(Error);
  });

  it('node.max_concurrent_requests: node-wide, beyond it POOL_BUSY naming the node, while the pool limit is far away', async () => {
    const n = await node({ min_size: 3, max_size: 3, initial_size: 3, resource_limits: { max_concurrent_requests: 1000 } }, { SHOAL_MAX_CONCURRENT_REQUESTS: '2' });
    const slow = [0, 1].map(() => client.exec('synthetic', 'sleep', { ms: 3000 }, { nodeId: n.nodeId, timeoutMs: 15_000 }));
    // Both are in flight once the pool has lent two resources.
    await until('two execs in flight', async () => (await call<{ pools: Record<string, { active: number }> }>(nc, sub.nodeStatus(n.nodeId), {}, 3000)).pools.synthetic!.active === 2);
    const busy = await client.exec('synthetic', 'echo', 'third', { nodeId: n.nodeId, timeoutMs: 2000 }).then(() => undefined, (e: unknown) => e) as { code?: string; message?: string } | undefined;
    expect(busy?.code).to.equal('POOL_BUSY');
    expect(busy?.message).to.match(/^node .*max_concurrent_requests=2/);
    expect(await Promise.all(slow)).to.deep.equal([{ slept: 3000 }, { slept: 3000 }]);
    // Under the cap again: served.
    expect(await client.exec('synthetic', 'echo', 'after', { nodeId: n.nodeId })).to.equal('after');
  });

  it('node.log_level: debug shows debug lines; warn shows no info lines (and the node still serves)', async () => {
    const pool = { min_size: 0, max_size: 1, initial_size: 0, session_management: { enable_reuse: false } };
    const dbg = await node(pool, { SHOAL_LOG_LEVEL: 'debug' });
    await (await client.acquire('synthetic', { nodeId: dbg.nodeId })).release();
    await dbg.waitFor((l) => l.level === 'debug' && l.msg === 'resource destroyed', 10_000);

    const info = await node(pool);
    await (await client.acquire('synthetic', { nodeId: info.nodeId })).release();

    // At warn there is no 'listening' line to wait for: the node is ready when it serves.
    const warn = startService('services/pool-node/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig(pool), SHOAL_HTTP_PORT: '-1', SHOAL_NODE_ID: 'warn-node', SHOAL_LOG_LEVEL: 'warn' });
    services.push(warn);
    await until('the warn-level node serves', async () => {
      const l = await client.acquire('synthetic', { nodeId: 'warn-node', timeoutMs: 500 }).catch(() => undefined);
      if (!l) return false;
      await l.release();
      return true;
    });
    expect(info.logs.some((l) => l.level === 'info'), 'the default level logs info').to.equal(true);
    expect(info.logs.filter((l) => l.level === 'debug'), 'the default level logs no debug').to.deep.equal([]);
    expect(warn.logs.filter((l) => l.level === 'info' || l.level === 'debug'), 'warn logs nothing below warn').to.deep.equal([]);
  });
});
