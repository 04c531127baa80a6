import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client, type Lease } from '@shoal/client';
import { PROTOCOL_VERSION, subjects } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { eventually, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Every parked key rides in every heartbeat. A heartbeat that no longer fits
 * the server's max_payload cannot be sent, and balancers then take the node
 * for gone: the node must say so at warn (once per streak, not every
 * interval), not at debug. Here a small max_payload stands in for many long
 * keys under the real 1 MB.
 */
const s = subjects('shoal');

describe('pool-node heartbeat too large to publish (real nats-server, pool-node process)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let dir: string;
  let node: Service & { nodeId: string };
  let balancer: Service;
  let client: Client;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-hb-payload-'));
    nats = await startNatsServer({ maxPayload: 8192 });
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '100ms', drain_grace: '500ms' },
      pools: { synthetic: { driver: 'synthetic', min_size: 0, max_size: 64, initial_size: 64, session_management: { max_parked: 64 } } },
    }));
    node = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_LOG_LEVEL: 'debug' });
    balancer = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1' });
    await balancer.waitFor((l) => l.msg === 'listening');
    client = await connect({ servers: [nats.url], name: 'hb-payload' });
  });
  after(async () => {
    await client?.close();
    await balancer?.kill();
    await node?.kill();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('warns once when heartbeats stop fitting, and says when they are sent again', async () => {
    const leases: Lease[] = [];
    for (let i = 0; i < 64; i++) leases.push(await client.acquire('synthetic', { timeoutMs: 10_000 }));
    // 64 keys of 128 characters (the longest allowed): over 8 KB of keys in each heartbeat, over the 8 KB max_payload.
    for (const [i, l] of leases.entries()) await l.release({ park: `${String(i).padStart(3, '0')}-${'k'.repeat(124)}` });
    const warns = () => node.logs.filter((l) => l.level === 'warn' && String(l.msg).startsWith('heartbeat not sent'));
    const warned = await eventually('a warning', async () => warns()[0], 10_000, 50);
    expect(Number(warned.bytes)).to.be.greaterThan(8192);
    // Three more failed heartbeats (at debug): still one warning for the streak.
    await eventually('more failed heartbeats', async () => node.logs.filter((l) => l.level === 'debug' && l.msg === 'heartbeat not sent').length >= 3, 10_000, 50);
    expect(warns()).to.have.length(1);
    // Claiming keys empties the heartbeat again (on the node directly: the balancer has taken it for gone by now).
    for (let i = 0; i < 40; i++) {
      await call(client.nc, s.nodeAcquire(node.nodeId), { v: PROTOCOL_VERSION, pool: 'synthetic', park: `${String(i).padStart(3, '0')}-${'k'.repeat(124)}`, timeoutMs: 5000 }, 5000);
    }
    await eventually('heartbeats again', async () => node.logs.some((l) => l.msg === 'heartbeats sent again'), 10_000, 50);
  });
});
