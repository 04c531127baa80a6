import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { connect as natsConnect, type KV, type NatsConnection } from 'nats';
import { encode, PROTOCOL_VERSION, readReply, SETTINGS_BUCKET, subjects, type Lease } from '@shoal/protocol';
import { openBucket } from '@shoal/runtime';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-server.js';
import { ROOT, sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Shoal on a 3-server nats-server cluster (routes on loopback): pool-nodes
 * and balancers on different servers, clients on the third. The server
 * holding the settings bucket's stream leader is SIGKILLed under load; the
 * operator's settings, a target the autoscaler would have written and the
 * strategy survive, `shoal strategy` works again within its 15 s deadline,
 * and a balancer started afterwards serves the stored strategy at once.
 */
const s = subjects('shoal');
const POOL = 'synthetic';
const STREAM = `KV_${SETTINGS_BUCKET}`;
/** The CLI's steering deadline: the bound within which it must steer again after the kill. */
const STEER_BOUND_MS = 15_000;

interface Status { balancerId: string; strategy: string; settings: { watched: boolean } }

function shoal(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), ...args], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`shoal ${args.join(' ')} hung; stderr: ${stderr}`)); }, timeoutMs);
    p.once('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr, ms: Date.now() - t0 }); });
  });
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(100);
  }
}

describe('Shoal on a 3-server NATS cluster (server with the settings leader SIGKILLed under load)', function () {
  this.timeout(90_000);
  let cluster: NatsCluster;
  let nc: NatsConnection;
  const procs: Service[] = [];
  const balancers = new Map<string, Service>();

  /** `home` first: the process connects there and learns the others from the cluster's gossip. */
  const urlsFrom = (home: number) => [cluster.urls[home]!, ...cluster.urls.filter((_, i) => i !== home)].join(',');

  async function startBalancer(id: string, home: number): Promise<Service> {
    const b = startService('services/balancer/dist/main.js', {
      SHOAL_NATS_URL: cluster.urls[home]!, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info', SHOAL_BALANCER_ID: id,
    });
    procs.push(b);
    balancers.set(id, b);
    await b.waitFor((l) => l.msg === 'listening', 30_000);
    return b;
  }

  async function status(id: string): Promise<Status> {
    return readReply<Status>((await nc.request(s.adminStatusOf(id), encode({ v: PROTOCOL_VERSION }), { timeout: 2000 })).data);
  }

  after(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await nc?.close().catch(() => {});
    await cluster?.stop();
  });

  it('keeps settings, targets and strategy; the CLI steers again; a restarted balancer serves the stored strategy', async () => {
    cluster = await startNatsCluster(3);
    // Clients (this test, the CLI) on the third server.
    nc = await natsConnect({ servers: urlsFrom(2), maxReconnectAttempts: -1, reconnectTimeWait: 100, noRandomize: true });

    // Nodes and balancers on the first two servers.
    for (const [id, home] of [['n1', 0], ['n2', 1]] as const) {
      procs.push(await startPoolNode({
        SHOAL_NATS_URL: cluster.urls[home]!, SHOAL_NODE_ID: id, SHOAL_HEARTBEAT_INTERVAL: '200ms', SHOAL_DRAIN_GRACE: '1s',
        SHOAL_POOL_SYNTHETIC_MIN_SIZE: '2', SHOAL_POOL_SYNTHETIC_INITIAL_SIZE: '2', SHOAL_POOL_SYNTHETIC_MAX_SIZE: '8',
      }));
    }
    await Promise.all([startBalancer('b1', 0), startBalancer('b2', 1)]);

    // The balancers created the bucket with 3 replicas: nobody configured any.
    const jsm = await nc.jetstreamManager();
    const info = await eventually('the settings stream', async () => (await jsm.streams.info(STREAM)), 10_000);
    expect(info.config.num_replicas).to.equal(3);
    // A bucket made with 1 replica (before the cluster grew) is scaled up when opened without a count.
    await openBucket(nc, 'shoal_older', { replicas: 1 });
    expect((await jsm.streams.info('KV_shoal_older')).config.num_replicas).to.equal(1);
    await openBucket(nc, 'shoal_older');
    expect((await jsm.streams.info('KV_shoal_older')).config.num_replicas).to.equal(3);

    // The operator's strategy, through the CLI; a target the autoscaler would own; a health entry.
    const set = await shoal(['strategy', 'round_robin', '--nats', urlsFrom(2)]);
    expect(set.code, set.stderr).to.equal(0);
    const kv: KV = await openBucket(nc, SETTINGS_BUCKET);
    await kv.put(`target.${POOL}`, new TextEncoder().encode(JSON.stringify({ target: 6, epoch: 1 })));
    // A health entry as the health-checker writes it (the balancers now read health.* as verdicts, so it must be one).
    const verdict = { v: PROTOCOL_VERSION, nodeId: 'n1', healthy: true, at: Date.now(), since: Date.now(), checkerId: 'hc-test', checks: [], pools: {} };
    await kv.put('health.n1', new TextEncoder().encode(JSON.stringify(verdict)));
    for (const id of ['b1', 'b2']) await eventually(`${id} on round_robin`, async () => ((await status(id)).strategy === 'round_robin' ? true : undefined), 10_000);

    // Load from the clients' server: acquire, hold a moment, release.
    let stop = false;
    let ok = 0;
    let failed = 0;
    let okAfterKill = 0;
    let killed = false;
    const load = Promise.all(Array.from({ length: 4 }, async () => {
      while (!stop) {
        try {
          const m = await nc.request(s.poolAcquire(POOL), encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs: 1500, ttlMs: 5000 }), { timeout: 1800 });
          const lease = readReply<Lease>(m.data);
          ok++;
          if (killed) okAfterKill++;
          await sleep(2);
          nc.publish(s.leaseRelease(lease.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: lease.leaseId, secret: lease.secret }));
        } catch {
          failed++;
          await sleep(20);
        }
      }
    }));
    await eventually('some load', async () => (ok > 50 ? true : undefined), 15_000);

    // SIGKILL the server holding the bucket's stream leader.
    const leader = (await jsm.streams.info(STREAM)).cluster!.leader!;
    const victim = cluster.servers.findIndex((x) => x.name === leader);
    expect(victim).to.be.at.least(0);
    await cluster.kill(victim);
    killed = true;
    const killedAt = Date.now();
    const survivors = cluster.urls.filter((_, i) => i !== victim).join(',');

    // The CLI steers again (its own retries, within its 15 s deadline).
    const steer = await shoal(['strategy', 'least_connections', '--nats', survivors]);
    expect(steer.code, steer.stderr).to.equal(0);
    expect(steer.ms).to.be.below(STEER_BOUND_MS + 5000);
    // Both balancers, whichever server they were on, apply it.
    for (const id of ['b1', 'b2']) {
      await eventually(`${id} on least_connections`, async () => ((await status(id)).strategy === 'least_connections' ? true : undefined), 20_000);
    }

    const appliedMs = Date.now() - killedAt;
    // SHOAL_TEST_FIGURES=1 prints what docs/scaling.md quotes.
    if (process.env.SHOAL_TEST_FIGURES) {
      console.log(JSON.stringify({ killed: leader, steerMs: steer.ms, bothAppliedMs: appliedMs, failedSoFar: failed, okSoFar: ok }));
      for (const [id, b] of balancers) for (const l of b.logs) if (/setting|strategy|nats status/.test(String(l.msg)) && String(l.ts) >= new Date(killedAt - 100).toISOString()) console.log(id, JSON.stringify(l));
    }

    // The target and the health entry survived, as stored.
    const target = await eventually('target readable', async () => (await kv.get(`target.${POOL}`)) ?? undefined, 10_000);
    expect(JSON.parse(new TextDecoder().decode(target.value))).to.deep.equal({ target: 6, epoch: 1 });
    const health = await kv.get('health.n1');
    expect(JSON.parse(new TextDecoder().decode(health!.value))).to.deep.equal(verdict);
    const stored = await kv.get('strategy');
    // The entry also says who set it and when ({by, at}, the operator view's metadata): compare the strategy itself.
    const entry = JSON.parse(new TextDecoder().decode(stored!.value)) as { strategy?: unknown; at?: unknown };
    expect(entry.strategy).to.equal('least_connections');
    expect(entry.at).to.be.a('number');

    // A balancer restarted now (on a surviving server) serves the stored strategy from its first answer.
    const survivorHome = [0, 1].find((i) => i !== victim) ?? 0;
    await balancers.get('b1')!.kill('SIGTERM');
    await startBalancer('b3', survivorHome);
    const first = await status('b3');
    expect(first.strategy).to.equal('least_connections');
    expect(first.settings.watched).to.equal(true);

    // Traffic went on after the kill.
    await eventually('acquires after the kill', async () => (okAfterKill > 20 ? true : undefined), 15_000);
    stop = true;
    await load;
    expect(ok).to.be.greaterThan(failed);
    // Keys the balancer does not own (target.*) are ignored quietly, and a valid health verdict is read without a warning.
    for (const b of balancers.values()) {
      expect(b.logs.filter((l) => l.level === 'warn' && /setting/.test(String(l.msg)) && /target|health/.test(JSON.stringify(l)))).to.deep.equal([]);
    }
  });
});
