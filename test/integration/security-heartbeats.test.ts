import { expect } from 'chai';
import { connect, type Client } from '@shoal/client';
import { encode, PROTOCOL_VERSION, subjects } from '@shoal/protocol';
import { call, connectNats, type NatsConnection } from '@shoal/runtime';
import { writeConfig } from '../helpers/cluster.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Forged heartbeats with roles off (with roles on a client cannot heartbeat
 * at all: security-roles.test.ts). One forged message on a real node's
 * subject used to hide that node until the balancers restarted; a phantom
 * announcing a huge interval was never swept.
 */
const s = subjects('shoal');
const POOL = 'synthetic';

describe('security: forged heartbeats cannot bend membership (integration, roles off)', function () {
  this.timeout(40_000);
  let nats: NatsServer;
  let node: Service;
  let balancer: Service;
  let nc: NatsConnection;
  let client: Client;

  before(async () => {
    nats = await startNatsServer();
    const cfg = writeConfig({ min_size: 1, max_size: 2, initial_size: 1 });
    node = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_NODE_ID: 'n1' });
    balancer = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '0', SHOAL_BALANCER_ID: 'b1' });
    await balancer.waitFor((l) => l.msg === 'listening');
    nc = await connectNats({ servers: [nats.url], waitOnFirstConnect: false });
    client = await connect({ nc });
  });

  after(async () => {
    await client?.close();
    await nc?.close();
    await Promise.all([node, balancer].map((p) => p?.kill('SIGKILL')));
    await nats?.stop();
  });

  const forged = (nodeId: string, o: Record<string, unknown>) => encode({
    v: PROTOCOL_VERSION, nodeId, seq: 1e12, startedAt: Date.now() + 86_400_000, instanceId: 'forged', intervalMs: 1e9, draining: true,
    host: 'evil', pid: 1, inFlight: 0, maxConcurrent: 10, cpu: 0, memory: { rss: 0, heapUsed: 0 },
    pools: { [POOL]: { kind: 'synthetic', total: 9, idle: 9, active: 0, creating: 0, waiting: 0, min: 0, max: 9, target: 9, maxWaiting: 9, weight: 1, latencyMs: 0, execLatencyMs: 0, errorRate: 0, requestRate: 0, reuseRate: 0, memoryBytes: 0, available: true } },
    ...o,
  });

  it('a forged heartbeat on a real node\'s subject (future start, huge interval and seq, draining) does not hide it', async () => {
    await (await client.acquire(POOL, { timeoutMs: 5000 })).release();
    nc.publish(s.heartbeat('n1'), forged('n1', {}));
    // Within bounds but draining, from another instance: undone by n1's next heartbeat (200 ms).
    nc.publish(s.heartbeat('n1'), forged('n1', { startedAt: Date.now(), intervalMs: 60_000 }));
    await nc.flush();
    await sleep(600);
    const lease = await client.acquire(POOL, { timeoutMs: 3000 });
    expect(lease.nodeId).to.equal('n1');
    await lease.release();
    const st = await call<{ nodes: { nodeId: string; draining: boolean; host: string }[] }>(nc, s.adminStatus, {}, 2000);
    expect(st.nodes).to.have.length(1);
    expect(st.nodes[0]!.draining).to.equal(false);
    expect(st.nodes[0]!.host).not.to.equal('evil');
  });

  it('a phantom with a huge interval is refused; heartbeats on another node\'s subject are refused; both are counted', async () => {
    nc.publish(s.heartbeat('phantom'), forged('phantom', { startedAt: Date.now() - 1000, seq: 0, draining: false }));
    nc.publish(s.heartbeat('n1'), forged('other', { startedAt: Date.now() - 1000, seq: 0, intervalMs: 1000 }));
    await nc.flush();
    await sleep(300);
    const st = await call<{ nodes: { nodeId: string }[] }>(nc, s.adminStatus, {}, 2000);
    expect(st.nodes.map((n) => n.nodeId)).to.deep.equal(['n1']);
    const port = (await balancer.waitFor((l) => l.msg === 'listening')).httpPort as number;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).to.match(/shoal_refused_messages_total\{reason="heartbeat_interval_out_of_bounds"[^}]*\} [1-9]/);
    expect(text).to.match(/shoal_refused_messages_total\{reason="heartbeat_node_id_mismatch"[^}]*\} [1-9]/);
  });
});
