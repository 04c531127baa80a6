import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { connect, type Client } from '@shoal/client';
import { encode, PROTOCOL_VERSION, readReply, subjects, type ShoalError } from '@shoal/protocol';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';
import { writeConfig } from '../helpers/cluster.js';

/**
 * What an operator touches, each through its own surface: the node's and the
 * balancer's HTTP routes, the metrics a Prometheus scrape reads, and
 * `shoal drain` (the node's drain subject) with what follows from it
 * (/healthz 503, new work refused, held leases revoked after the grace, the
 * SDK's lease marked lost when its renew fails).
 */
const s = subjects('shoal');

/** One sample of a Prometheus text exposition: the value of the first series named `name` whose labels include `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** Poll `get` until `ok(value)`; a generous deadline that only says it did not hang. */
async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}; last: ${JSON.stringify(v).slice(0, 300)}`);
    await sleep(25);
  }
}

function shoalCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('operator surfaces (integration: HTTP routes, metrics scrape, shoal drain)', function () {
  this.timeout(40_000);
  let nats: NatsServer;
  let client: Client;
  let nc: NatsConnection;
  let balancer: Service;
  let balancerPort: number;
  const services: Service[] = [];

  before(async function () {
    this.timeout(30_000);
    nats = await startNatsServer();
    client = await connect({ servers: [nats.url], name: 'surfaces-it' });
    nc = await natsConnect({ servers: nats.url });
    balancer = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info', SHOAL_BALANCER_ID: 'bs' });
    balancerPort = (await balancer.waitFor((l) => l.msg === 'listening')).httpPort as number;
  });
  after(async () => {
    await Promise.all([balancer, ...services].map((x) => x?.kill('SIGKILL')));
    await client?.close();
    await nc?.close();
    await nats?.stop();
  });

  async function node(id: string, pool: Record<string, unknown>) {
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_NODE_ID: id, SHOAL_CONFIG: writeConfig(pool) });
    services.push(n);
    return n;
  }
  const get = async (port: number, path: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
  };
  const json = async <T>(port: number, path: string): Promise<T> => JSON.parse((await get(port, path)).text) as T;
  const metrics = async (port: number) => (await get(port, '/metrics')).text;

  it('serves the node\'s /api/v1/session-pool/status, /leases and /api/v1/metrics, and the balancer\'s /api/v1/balancer/status', async () => {
    const n = await node('ns1', { min_size: 2, max_size: 3, initial_size: 2 });
    const lease = await client.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 30_000 });
    try {
      const st = await json<{ nodeId: string; draining: boolean; pools: Record<string, { total: number; active: number; idle: number }> }>(n.httpPort!, '/api/v1/session-pool/status');
      expect(st.nodeId).to.equal('ns1');
      expect(st.draining).to.equal(false);
      expect(st.pools.synthetic).to.include({ total: 2, active: 1, idle: 1 });

      const leases = await json<{ nodeId: string; leases: { leaseId: string; resourceId: string; pool: string; holder: { client: string }; expiresInMs: number }[] }>(n.httpPort!, '/api/v1/session-pool/leases');
      expect(leases.nodeId).to.equal('ns1');
      expect(leases.leases).to.have.length(1);
      expect(leases.leases[0]).to.include({ leaseId: lease.id, resourceId: lease.resourceId, pool: 'synthetic' });
      expect(leases.leases[0]!.holder.client).to.equal('surfaces-it');
      expect(leases.leases[0]!.expiresInMs).to.be.within(1, 30_000);

      // The design's path for the scrape: the same Prometheus text as /metrics.
      const m = await get(n.httpPort!, '/api/v1/metrics');
      expect(m.status).to.equal(200);
      expect(m.type).to.contain('text/plain');
      expect(sample(m.text, 'aicli_session_pool_size', { pool: 'synthetic', node: 'ns1', type: 'active' })).to.equal(1);

      const b = await until('the balancer to know ns1', () => json<{ balancerId: string; nodes: { nodeId: string; state: string; pools: Record<string, unknown> }[] }>(balancerPort, '/api/v1/balancer/status'),
        (v) => v.nodes.some((x) => x.nodeId === 'ns1' && x.state === 'alive'));
      expect(b.balancerId).to.equal('bs');
      expect(b.nodes.find((x) => x.nodeId === 'ns1')!.pools).to.have.property('synthetic');
    } finally {
      await lease.release();
    }
    const after = await json<{ leases: unknown[] }>(n.httpPort!, '/api/v1/session-pool/leases');
    expect(after.leases).to.deep.equal([]);
  });

  it('counts expired leases, wire errors, in-flight requests and memory usage in the metrics scrape', async () => {
    const n = await node('ns2', { min_size: 2, max_size: 2, initial_size: 2, resource_limits: { max_total_memory: '8MB' }, options: { memory_bytes: 1024 * 1024 } });
    const port = n.httpPort!;
    const L = { pool: 'synthetic', node: 'ns2' };

    // shoal_leases_expired_total: a lease nobody renews runs out and is reclaimed.
    expect(sample(await metrics(port), 'shoal_leases_expired_total', L) ?? 0).to.equal(0);
    const noRenew = await connect({ servers: [nats.url], name: 'no-renew', autoRenew: false });
    try {
      await noRenew.acquire('synthetic', { nodeId: n.nodeId, ttlMs: 300 });
      await until('the expiry to be counted', () => metrics(port), (t) => sample(t, 'shoal_leases_expired_total', L) === 1);
    } finally {
      await noRenew.close();
    }

    // shoal_errors_total{code}: each typed error answered on the wire.
    const errs = () => metrics(port).then((t) => sample(t, 'shoal_errors_total', { node: 'ns2', code: 'LEASE_NOT_FOUND' }) ?? 0);
    const before = await errs();
    const reply = await nc.request(s.leaseRelease(n.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: '01HUNKNOWNLEASE' }), { timeout: 3000 });
    expect(() => readReply(reply.data)).to.throw().with.property('code', 'LEASE_NOT_FOUND');
    expect(await errs()).to.equal(before + 1);

    // shoal_node_in_flight_requests: a one-shot exec counts while it runs, and not after.
    expect(sample(await metrics(port), 'shoal_node_in_flight_requests', { node: 'ns2' })).to.equal(0);
    const running = client.exec('synthetic', 'sleep', { ms: 1500 }, { nodeId: n.nodeId, timeoutMs: 20_000 });
    await until('the exec to count as in flight', () => metrics(port), (t) => (sample(t, 'shoal_node_in_flight_requests', { node: 'ns2' }) ?? 0) >= 1);
    expect(await running).to.deep.equal({ slept: 1500 });
    await until('in flight back to 0', () => metrics(port), (t) => sample(t, 'shoal_node_in_flight_requests', { node: 'ns2' }) === 0);

    // aicli_session_pool_resource_usage{resource=memory}: 2 resources of 1 MB against max_total_memory 8 MB.
    await until('memory usage 2/8', () => metrics(port), (t) => sample(t, 'aicli_session_pool_resource_usage', { ...L, resource: 'memory' }) === 0.25);
    const cpu = sample(await metrics(port), 'aicli_session_pool_resource_usage', { ...L, resource: 'cpu' });
    expect(cpu).to.be.a('number').and.to.be.at.least(0);
  });

  it('`shoal drain` drains one node: /healthz 503, new work refused, balancers stop placing there, held leases revoked after the grace and marked lost in the SDK', async () => {
    await node('ns3', { min_size: 1, max_size: 2, initial_size: 1 });
    const doomed = await node('ns4', { min_size: 1, max_size: 2, initial_size: 1 });
    const health = async (port: number) => (await get(port, '/healthz')).status;
    expect(await health(doomed.httpPort!)).to.equal(200);
    // Background renew every 100 ms: the lease lives until the drain revokes it.
    const held = await client.acquire('synthetic', { nodeId: doomed.nodeId, ttlMs: 300 });
    expect(client.leases).to.include(held);

    const r = await shoalCli(['drain', doomed.nodeId, '--grace', '1500', '--json', '--nats', nats.url]);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ nodeId: 'ns4', draining: true, already: false });
    expect(await health(doomed.httpPort!)).to.equal(503);
    expect((await json<{ draining: boolean }>(doomed.httpPort!, '/healthz')).draining).to.equal(true);

    // New work refused at the node, typed; the held lease still works within the grace.
    const refused = await client.acquire('synthetic', { nodeId: doomed.nodeId, timeoutMs: 2000 }).then(() => null, (e: ShoalError) => e);
    expect(refused?.code).to.equal('NODE_DRAINING');
    expect(await held.exec('echo', 'within grace')).to.equal('within grace');
    // A second drain says so.
    const again = await shoalCli(['drain', doomed.nodeId, '--nats', nats.url]);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.contain('ns4 was already draining');

    // The balancer hears the draining heartbeat and places elsewhere (ns3, or a node of an earlier case).
    await until('the balancer to see ns4 draining', () => json<{ nodes: { nodeId: string; draining?: boolean }[] }>(balancerPort, '/api/v1/balancer/status'),
      (v) => v.nodes.some((x) => x.nodeId === 'ns4' && x.draining === true));
    for (let i = 0; i < 6; i++) {
      const l = await client.acquire('synthetic', { timeoutMs: 5000 });
      expect(l.nodeId).to.not.equal(doomed.nodeId);
      await l.release();
    }

    // After the grace the lease is revoked; the SDK learns it (the node's lease event, or its renew
    // hearing LEASE_NOT_FOUND) and marks the lease lost: LEASE_LOST, revoked by the drain, not expired.
    await until('the lease to be lost', async () => held.lost, (lost) => lost !== undefined);
    expect(held.lost!.code).to.equal('LEASE_LOST');
    expect(held.lost!.details?.reason).to.be.oneOf(['drained', 'revoked']);
    expect(client.leases).to.not.include(held);
    // The holder may hear of the loss before the node logs the end of its drain.
    expect(await doomed.waitFor((l) => l.msg === 'drained', 10_000)).to.include({ revoked: 1 });
    // An unknown node: exit 3 (not reachable), one line on stderr.
    const none = await shoalCli(['drain', 'nobody', '--nats', nats.url]);
    expect(none.code).to.equal(3);
    expect(none.stderr).to.contain('no node nobody answers');
  });
});
