import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as natsConnect, createInbox, type NatsConnection } from 'nats';
import { decode, encode, PROTOCOL_VERSION, subjects } from '@shoal/protocol';
import { Actor, silentLogger } from '@shoal/runtime';
import { freePort, natsServerBin, startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * NATS micro discovery: every Shoal process kind (pool-node, balancer,
 * autoscaler, health-checker)
 * answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` — asked here with plain
 * NATS requests, as `nats micro ls` does — with its name, version, id,
 * endpoints (subject, queue group) and per-endpoint counts measured by the
 * process.
 */
const s = subjects('shoal');

interface Info { type: string; name: string; id: string; version: string; metadata?: Record<string, string>; endpoints: { name: string; subject: string; queue_group?: string }[] }
interface Stats { type: string; name: string; id: string; endpoints: { name: string; subject: string; num_requests: number; num_errors: number; processing_time: number; average_processing_time: number }[] }

describe('NATS micro services ($SRV.PING/INFO/STATS) of every process kind', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let nc: NatsConnection;
  const procs: Service[] = [];

  /** Every answer to one request within `ms` (several services answer one subject). */
  async function gather<T>(subject: string, ms = 1000): Promise<T[]> {
    const inbox = createInbox();
    const out: T[] = [];
    const sub = nc.subscribe(inbox, { callback: (_e, m) => { out.push(JSON.parse(new TextDecoder().decode(m.data)) as T); } });
    nc.publish(subject, new Uint8Array(), { reply: inbox });
    await sleep(ms);
    sub.unsubscribe();
    return out;
  }

  before(async () => {
    nats = await startNatsServer();
    nc = await natsConnect({ servers: nats.url });
    procs.push(await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_NODE_ID: 'node-m', SHOAL_HEARTBEAT_INTERVAL: '200ms' }));
    const b = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info', SHOAL_BALANCER_ID: 'bal-m' });
    procs.push(b);
    await b.waitFor((l) => l.msg === 'listening');
    for (const svc of ['autoscaler', 'health-checker']) {
      const p = startService(`services/${svc}/dist/main.js`, { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' });
      procs.push(p);
      await p.waitFor((l) => l.msg === 'listening');
    }
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await nc?.close();
    await nats?.stop();
  });

  it('$SRV.PING: every kind answers with name, id and version', async () => {
    const pings = await gather<{ type: string; name: string; id: string; version: string }>('$SRV.PING');
    expect(pings.map((p) => p.name).sort()).to.deep.equal(['shoal-autoscaler', 'shoal-balancer', 'shoal-health-checker', 'shoal-pool-node']);
    for (const p of pings) {
      expect(p.type).to.equal('io.nats.micro.v1.ping_response');
      expect(p.id).to.be.a('string').with.length.above(0);
      expect(p.version).to.match(/^\d+\.\d+\.\d+/);
    }
    // Discovery by name, as `nats micro info shoal-pool-node` asks.
    expect((await gather<{ name: string }>('$SRV.PING.shoal-pool-node')).map((p) => p.name)).to.deep.equal(['shoal-pool-node']);
  });

  it('$SRV.INFO: endpoints with subjects and queue groups; the data plane named in the metadata', async () => {
    const infos = await gather<Info>('$SRV.INFO');
    const node = infos.find((i) => i.name === 'shoal-pool-node')!;
    const bal = infos.find((i) => i.name === 'shoal-balancer')!;
    expect(node.metadata).to.include({ nodeId: 'node-m', prefix: 'shoal' });
    expect(node.metadata!.data_plane).to.include(s.nodeAcquire('node-m'));
    expect(node.endpoints.map((e) => [e.name, e.subject]).sort()).to.deep.equal([
      ['drain', s.nodeDrain('node-m')], ['scale', s.nodeScale('node-m')], ['status', s.nodeStatus('node-m')], ['undrain', s.nodeUndrain('node-m')],
    ]);
    expect(bal.metadata).to.include({ balancerId: 'bal-m', data_plane_queue: 'shoal-balancers' });
    const byName = Object.fromEntries(bal.endpoints.map((e) => [e.name, e]));
    expect(byName.status).to.include({ subject: s.adminStatus, queue_group: 'shoal-balancers' });
    expect(byName.strategy).to.include({ subject: s.adminStrategy, queue_group: 'shoal-balancers' });
    expect(byName['settings-reset']).to.include({ subject: s.adminSettingsReset });
  });

  it('$SRV.STATS: requests, errors and processing time counted per endpoint', async () => {
    const before = (await gather<Stats>('$SRV.STATS.shoal-pool-node'))[0]!.endpoints.find((e) => e.name === 'status')!;
    for (let i = 0; i < 3; i++) await nc.request(s.nodeStatus('node-m'), encode({ v: PROTOCOL_VERSION }), { timeout: 3000 });
    // A bad scale request: a typed error reply, counted as an error.
    await nc.request(s.nodeScale('node-m'), encode({ v: PROTOCOL_VERSION, pool: 'synthetic', op: 'sideways', n: 1 }), { timeout: 3000 });
    const stats = (await gather<Stats>('$SRV.STATS.shoal-pool-node'))[0]!;
    expect(stats.type).to.equal('io.nats.micro.v1.stats_response');
    const status = stats.endpoints.find((e) => e.name === 'status')!;
    expect(status.num_requests - before.num_requests).to.equal(3);
    expect(status.processing_time).to.be.greaterThan(0);
    const scale = stats.endpoints.find((e) => e.name === 'scale')!;
    expect(scale.num_requests).to.equal(1);
    expect(scale.num_errors).to.equal(1);

    await nc.request(s.adminStatus, encode({ v: PROTOCOL_VERSION }), { timeout: 3000 });
    const b = (await gather<Stats>('$SRV.STATS.shoal-balancer'))[0]!;
    expect(b.endpoints.find((e) => e.name === 'status')!.num_requests).to.be.at.least(1);
  });

  it('a micro endpoint answers only to an inbox (no reflection) and logs a caller\'s mistake without a stack', async () => {
    const target = 'shoal.reflect.target';
    const seen: string[] = [];
    const sub = nc.subscribe(target, { callback: (_e, m) => { seen.push(m.subject); } });
    await nc.flush();
    // The same request with an inbox is answered: the refusal below is the reply rule, not a dead endpoint.
    expect(decode((await nc.request(s.nodeStatus('node-m'), encode({ v: PROTOCOL_VERSION }), { timeout: 3000 })).data).ok).to.equal(true);
    nc.publish(s.nodeStatus('node-m'), encode({ v: PROTOCOL_VERSION }), { reply: target });
    // Would drain the node if it ran: refused before the handler.
    nc.publish(s.nodeDrain('node-m'), encode({ v: PROTOCOL_VERSION }), { reply: target });
    await nc.flush();
    // Junk on a control endpoint: a typed BAD_REQUEST to the caller, a warning (no stack) in the log.
    const junk = decode((await nc.request(s.nodeDrain('node-m'), new Uint8Array([0xc1, 0x00]), { timeout: 3000 })).data);
    expect((junk.error as { code: string }).code).to.equal('BAD_REQUEST');
    await sleep(300);
    sub.unsubscribe();
    expect(seen).to.deep.equal([]);
    const st = decode((await nc.request(s.nodeStatus('node-m'), encode({ v: PROTOCOL_VERSION }), { timeout: 3000 })).data);
    expect((st.data as { draining: boolean }).draining).to.equal(false);
    const node = procs[0]!;
    expect(node.logs.filter((l) => l.level === 'error').map((l) => l.msg)).to.deep.equal([]);
    expect(node.logs.some((l) => l.level === 'warn' && String(l.msg).includes('refused'))).to.equal(true);
  });
});

describe('NATS micro services without the permission for $SRV', function () {
  this.timeout(30_000);

  it('the node still serves its control endpoints (registration is never what stops a node)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-nats-perm-'));
    const port = await freePort();
    const conf = join(dir, 'server.conf');
    // The node may not subscribe to $SRV.>: nats.js then closes its service.
    writeFileSync(conf, [
      `listen: 127.0.0.1:${port}`,
      'authorization {',
      '  users = [',
      '    { user: node, password: nodepass, permissions: { subscribe: { allow: [">"], deny: ["$SRV.>"] }, publish: { allow: [">"] } } }',
      '    { user: admin, password: adminpass }',
      '  ]',
      '}',
      '',
    ].join('\n'));
    const server = spawn(natsServerBin(), ['-c', conf], { stdio: 'ignore' });
    let node: Service | undefined;
    let nc: NatsConnection | undefined;
    try {
      const url = `nats://127.0.0.1:${port}`;
      const deadline = Date.now() + 10_000;
      for (;;) {
        try { nc = await natsConnect({ servers: url, user: 'admin', pass: 'adminpass' }); break; } catch (err) { if (Date.now() > deadline) throw err; await sleep(50); }
      }
      node = await startPoolNode({ SHOAL_NATS_URL: url, SHOAL_NATS_USER: 'node', SHOAL_NATS_PASS: 'nodepass', SHOAL_NODE_ID: 'node-p' });
      // The server refuses the $SRV subscriptions (logged as a NATS status error); the control subjects still answer.
      await node.waitFor((l) => l.data === 'PERMISSIONS_VIOLATION', 10_000);
      for (const subject of [s.nodeStatus('node-p'), s.nodeUndrain('node-p')]) {
        const r = await nc.request(subject, encode({ v: PROTOCOL_VERSION }), { timeout: 3000 });
        expect((decode(r.data) as { ok?: boolean }).ok, subject).to.equal(true);
      }
    } finally {
      await node?.kill('SIGKILL');
      await nc?.close();
      server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Actor endpoints when the micro service stops under them (in-process)', function () {
  this.timeout(20_000);

  it('carry on as plain subscriptions', async () => {
    const server = await startNatsServer({ jetstream: false });
    const nc = await natsConnect({ servers: server.url });
    class Probe extends Actor {
      async start(): Promise<void> {
        await this.registerMicro({ name: 'shoal-probe' });
        this.endpoint('echo', 'probe.echo', (m) => this.reply(m, { echoed: true }));
        await this.flushed();
      }
      breakService(): Promise<null | Error> { return this.micro!.stop(new Error('boom')); }
      async stop(): Promise<void> { await this.unlisten(); }
    }
    const probe = new Probe(nc, silentLogger);
    try {
      await probe.start();
      const ask = async () => (decode((await nc.request('probe.echo', encode({ v: PROTOCOL_VERSION }), { timeout: 2000 })).data) as { data?: unknown }).data;
      expect(await ask()).to.deep.equal({ echoed: true });
      await probe.breakService();
      await sleep(100);
      expect(await ask()).to.deep.equal({ echoed: true });
    } finally {
      await probe.stop();
      await nc.close();
      await server.stop();
    }
  });
});
