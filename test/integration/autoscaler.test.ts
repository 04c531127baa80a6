import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect as natsConnect, nkeyAuthenticator, type NatsConnection } from 'nats';
import { connect, type Client, type Lease } from '@shoal/client';
import { AUTOSCALER_LEADER_BUCKET, decode, encode, ErrorCodes, parseHeartbeat, ShoalError, subjects, type PoolStats } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { writeConfig } from '../helpers/cluster.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

const s = subjects();
const AUTOSCALER = 'services/autoscaler/dist/main.js';

/** Poll until `fn` returns something other than undefined; the deadline only means "it did not hang". */
async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The pool's stats per node, from the heartbeats. */
function watchPools(nc: NatsConnection, pool = 'synthetic'): Map<string, PoolStats & { draining: boolean }> {
  const m = new Map<string, PoolStats & { draining: boolean }>();
  nc.subscribe(s.anyHeartbeat, { callback: (_e, msg) => {
    try { const hb = parseHeartbeat(msg.data); const p = hb.pools[pool]; if (p) m.set(hb.nodeId, { ...p, draining: hb.draining }); } catch { /* ignore */ }
  } });
  return m;
}

function startAutoscaler(config: string, id: string, env: Record<string, string> = {}): Service {
  return startService(AUTOSCALER, { SHOAL_NATS_URL: '', SHOAL_CONFIG: config, SHOAL_HTTP_PORT: '0', SHOAL_AUTOSCALER_ID: id, SHOAL_LOG_LEVEL: 'info', ...env });
}

const decisions = (a: Service) => a.logs.filter((l) => l.msg === 'scaling decision');

async function metric(port: number, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => re.test(l));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('autoscaler (integration: real nats-server, pool-nodes and autoscalers as OS processes)', function () {
  this.timeout(120_000);
  let nats: NatsServer;
  let nc: NatsConnection;
  let client: Client;
  const procs: Service[] = [];
  const env = () => ({ SHOAL_NATS_URL: nats.url });
  const node = async (config: string, id: string) => {
    const n = await startPoolNode({ ...env(), SHOAL_CONFIG: config, SHOAL_NODE_ID: id });
    procs.push(n);
    return n;
  };
  const autoscaler = (config: string, id: string, extra: Record<string, string> = {}) => {
    const a = startAutoscaler(config, id, { ...env(), ...extra });
    procs.push(a);
    return a;
  };
  const elected = (a: Service) => a.waitFor((l) => l.msg === 'elected leader', 30_000);

  beforeEach(async () => {
    nats = await startNatsServer();
    nc = await natsConnect({ servers: nats.url });
    client = await connect({ servers: [nats.url], name: 'it' });
  });
  afterEach(async () => {
    await client.close().catch(() => {});
    await nc.close().catch(() => {});
    await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
    await nats.stop();
  });

  it('load above scale_up_threshold grows the pool by the increment, no more often than the cooldown; load gone shrinks it to min_size, never below and never a leased resource', async () => {
    const cfg = writeConfig({
      min_size: 1, max_size: 10, initial_size: 1,
      auto_scaling: { enabled: true, scale_up_threshold: 0.8, scale_down_threshold: 0.5, scale_up_increment: 2, scale_down_increment: 1, cooldown_period: '1500ms', stabilization_window: '1s' },
    }, 'autoscaler:\n  lease_ttl: 1s\n  interval: 200ms');
    const pools = watchPools(nc);
    await node(cfg, 'n1');
    await node(cfg, 'n2');
    const a = autoscaler(cfg, 'as-1');
    await elected(a);
    // 2 leases on each node: every resource busy (utilization 1).
    const leases: Lease[] = [];
    for (const nodeId of ['n1', 'n2']) for (let i = 0; i < 2; i++) leases.push(await client.acquire('synthetic', { nodeId, ttlMs: 60_000 }));
    // 4 busy: target 2 → 4 → 6 (4 of 6 busy is below the threshold: it stops there).
    await until('two scale-ups', () => (decisions(a).filter((d) => d.direction === 'up').length >= 2 ? true : undefined));
    await sleep(2000);
    const ups = decisions(a).filter((d) => d.direction === 'up');
    expect(ups.map((d) => [d.from, d.to, d.reason])).to.deep.equal([[2, 4, 'utilization'], [4, 6, 'utilization']]);
    expect(Date.parse(String(ups[1]!.ts)) - Date.parse(String(ups[0]!.ts))).to.be.at.least(1500);
    expect(ups[0]!.utilization).to.be.at.least(0.8);
    await until('targets 3+3 on the nodes', () => ([...pools.values()].reduce((x, p) => x + p.target, 0) === 6 ? true : undefined));

    // Load gone, except one lease held to the end: the pool shrinks to 1+1, the held resource survives.
    const kept = leases.shift()!;
    for (const l of leases) await l.release();
    await until('down to min_size on both nodes', () => ([...pools.values()].every((p) => p.target === 1) && pools.size === 2 ? true : undefined));
    await sleep(1500);
    const downs = decisions(a).filter((d) => d.direction === 'down');
    expect(downs.length).to.be.at.least(1);
    expect(Math.min(...downs.map((d) => d.to as number))).to.equal(2);
    for (const d of downs) expect((d.from as number) - (d.to as number)).to.equal(1);
    // The leased resource was never taken: its lease still works.
    expect(await kept.exec('echo', { still: 'here' })).to.deep.equal({ still: 'here' });
    await kept.release();
  });

  it('enabled: false (AICLI_SESSION_POOL_AUTO_SCALING=false) leaves the pool alone under load', async () => {
    const cfg = writeConfig({
      min_size: 1, max_size: 10, initial_size: 1,
      auto_scaling: { enabled: true, scale_up_threshold: 0.5, scale_down_threshold: 0.1, scale_up_increment: 2, scale_down_increment: 1, cooldown_period: '200ms', stabilization_window: '0s' },
    }, 'autoscaler:\n  lease_ttl: 1s\n  interval: 200ms');
    const pools = watchPools(nc);
    await node(cfg, 'n1');
    const a = autoscaler(cfg, 'as-1', { AICLI_SESSION_POOL_AUTO_SCALING: 'false' });
    await elected(a);
    const held = [await client.acquire('synthetic', { nodeId: 'n1' }), await client.acquire('synthetic', { nodeId: 'n1' })];
    // Many cooldowns and ticks under load.
    await sleep(3000);
    expect(decisions(a)).to.deep.equal([]);
    expect(pools.get('n1')!.target).to.equal(1);
    for (const l of held) await l.release();
  });

  it('SetTargetSize over NATS and through the CLI is spread over 3 nodes, and survives a restart of the autoscaler and of a node', async () => {
    const cfg = writeConfig({ min_size: 1, max_size: 6, initial_size: 1, auto_scaling: { enabled: false } }, 'autoscaler:\n  lease_ttl: 1s\n  interval: 200ms');
    const pools = watchPools(nc);
    const n3 = [await node(cfg, 'n1'), await node(cfg, 'n2'), await node(cfg, 'n3')];
    let a = autoscaler(cfg, 'as-1');
    await elected(a);
    await until('3 nodes seen', () => (pools.size === 3 ? true : undefined));
    const r = await until('the leader answers', async () => {
      try { return await call<Record<string, unknown>>(nc, s.adminScale('synthetic'), { pool: 'synthetic', op: 'target', n: 9 }, 5000); } catch { return undefined; }
    });
    expect(r).to.include({ applied: 9, requested: 9, clamped: false });
    expect(r.nodes).to.deep.equal({ n1: 3, n2: 3, n3: 3 });
    await until('3+3+3 on the nodes', () => ([...pools.values()].every((p) => p.target === 3 && p.total === 3) ? true : undefined));

    // The CLI, cluster-wide.
    const cli = await shoal(['scale', 'synthetic', 'to', '12', '--json', '--nats', nats.url]);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(JSON.parse(cli.stdout).nodes).to.deep.equal({ n1: 4, n2: 4, n3: 4 });
    await until('4+4+4 on the nodes', () => ([...pools.values()].every((p) => p.target === 4) ? true : undefined));
    // Clamped: said, and exit 1; the reachable part is applied.
    const over = await shoal(['scale', 'synthetic', 'to', '100', '--nats', nats.url]);
    expect(over.code).to.equal(1);
    expect(over.stderr).to.match(/asked for 100, clamped to 18/);
    await until('6+6+6', () => ([...pools.values()].every((p) => p.target === 6) ? true : undefined));
    const back = await shoal(['scale', 'synthetic', 'down', '6', '--json', '--nats', nats.url]);
    expect(back.code, back.stderr).to.equal(0);
    expect(JSON.parse(back.stdout)).to.include({ requested: 12, applied: 12 });
    await until('4+4+4 again', () => ([...pools.values()].every((p) => p.target === 4) ? true : undefined));

    // Autoscaler down; a node restarts (back at its initial size 1); a new autoscaler puts the stored target back.
    await a.kill('SIGTERM');
    await n3[2]!.kill('SIGTERM');
    pools.delete('n3');
    await node(cfg, 'n3');
    await until('n3 back at 1', () => (pools.get('n3')?.target === 1 ? true : undefined));
    a = autoscaler(cfg, 'as-2');
    await elected(a);
    await until('4+4+4 after both restarts', () => ([...pools.values()].every((p) => p.target === 4) && pools.size === 3 ? true : undefined));
    const st = await call<{ pools: Record<string, { target: number; requested: number }> }>(nc, s.autoscalerStatus, {}, 5000);
    expect(st.pools.synthetic).to.include({ target: 12, requested: 12 });
  });

  it('a node judged unhealthy (health verdict) counts as no capacity: the target is spread over the others', async () => {
    const cfg = writeConfig({ min_size: 1, max_size: 6, initial_size: 1, auto_scaling: { enabled: false } }, 'autoscaler:\n  lease_ttl: 1s\n  interval: 200ms');
    const pools = watchPools(nc);
    await node(cfg, 'n1');
    await node(cfg, 'n2');
    const a = autoscaler(cfg, 'as-1');
    await elected(a);
    const r = await until('the leader answers', async () => {
      try { return await call<{ nodes: Record<string, number> }>(nc, s.adminScale('synthetic'), { pool: 'synthetic', op: 'target', n: 6 }, 5000); } catch { return undefined; }
    });
    expect(r.nodes).to.deep.equal({ n1: 3, n2: 3 });
    // The health-checker's contract (issue 9): a verdict on <prefix>.health.verdict.<nodeId>.
    const verdict = { v: 1, nodeId: 'n2', healthy: false, at: Date.now(), since: Date.now(), checkerId: 'test', reason: 'ping timeout', checks: [], pools: {} };
    const stop = setInterval(() => nc.publish('shoal.health.verdict.n2', encode(verdict)), 200);
    try {
      await until('n1 holds all 6', () => (pools.get('n1')?.target === 6 ? true : undefined));
      const st = await call<{ pools: Record<string, { nodes: number; target: number }> }>(nc, s.autoscalerStatus, {}, 5000);
      expect(st.pools.synthetic).to.include({ nodes: 1, target: 6 });
    } finally {
      clearInterval(stop);
    }
    // Healthy again: spread over both once more (n2 keeps its 3, n1 gives back what is over 6 − 3).
    nc.publish('shoal.health.verdict.n2', encode({ ...verdict, healthy: true, at: Date.now() }));
    await until('spread over both again', () => ((pools.get('n1')?.target ?? 0) + (pools.get('n2')?.target ?? 0) === 6 && pools.get('n1')!.target < 6 ? true : undefined));
  });

  it('2 replicas: the leader SIGKILLed under changing load, one new leader acts within the bound; nodes refuse an older epoch (counted)', async () => {
    const cfg = writeConfig({
      min_size: 1, max_size: 10, initial_size: 1,
      auto_scaling: { enabled: true, scale_up_threshold: 0.8, scale_down_threshold: 0.2, scale_up_increment: 1, scale_down_increment: 1, cooldown_period: '300ms', stabilization_window: '500ms' },
    }, 'autoscaler:\n  lease_ttl: 1s\n  interval: 200ms');
    const pools = watchPools(nc);
    const n1 = await node(cfg, 'n1');
    const n2 = await node(cfg, 'n2');
    const a1 = autoscaler(cfg, 'as-1');
    await elected(a1);
    const a2 = autoscaler(cfg, 'as-2');
    await a2.waitFor((l) => l.msg === 'listening');
    await sleep(500);
    expect(a2.logs.some((l) => l.msg === 'elected leader')).to.equal(false);
    const firstEpoch = Number((await elected(a1)).epoch);

    // Changing load: leases come and go while the leader dies.
    let stop = false;
    const churn = (async () => {
      while (!stop) {
        const ls = await Promise.all([0, 1, 2].map((i) => client.acquire('synthetic', { nodeId: i % 2 ? 'n1' : 'n2' }).catch(() => undefined)));
        await sleep(300);
        await Promise.all(ls.map((l) => l?.release().catch(() => {})));
        await sleep(200);
      }
    })();
    await until('the leader has acted', () => (decisions(a1).length > 0 ? true : undefined));
    const killedAt = Date.now();
    a1.proc.kill('SIGKILL');
    const e2 = await elected(a2);
    const failoverMs = Date.parse(String(e2.ts)) - killedAt;
    expect(failoverMs, `failover took ${failoverMs} ms`).to.be.below(3000);
    expect(Number(e2.epoch)).to.be.above(firstEpoch);
    await until('the new leader acts', () => (decisions(a2).length > 0 ? true : undefined));
    stop = true;
    await churn;
    expect(a2.logs.filter((l) => l.msg === 'elected leader')).to.have.length(1);

    // Every command a node applied is from a term no older than the one before it.
    for (const n of [n1, n2]) {
      const epochs = n.logs.filter((l) => l.msg === 'scaled' && typeof l.epoch === 'number').map((l) => l.epoch as number);
      for (let i = 1; i < epochs.length; i++) expect(epochs[i]).to.be.at.least(epochs[i - 1]!);
    }
    // A paused ex-leader's command (the old epoch) is refused and counted; the target stays.
    const before = pools.get('n1')!.target;
    const stale = await call(nc, s.nodeScale('n1'), { pool: 'synthetic', op: 'target', n: 9, epoch: firstEpoch }, 5000).catch((e: unknown) => e);
    expect(stale).to.be.instanceOf(ShoalError);
    expect((stale as ShoalError).code).to.equal(ErrorCodes.STALE_EPOCH);
    expect((stale as ShoalError).details).to.include({ retryable: false });
    const line = /^shoal_errors_total\{.*code="STALE_EPOCH"/;
    expect(await metric(n1.httpPort!, line)).to.equal(1);
    await sleep(600);
    expect(n1.logs.some((l) => l.msg === 'scaled' && l.epoch === firstEpoch && l.n === 9)).to.equal(false);
    expect([before, 1]).to.include(pools.get('n1')!.target);
    void n2;
  });

  it('nodes full: desired pool-nodes rises (NATS subject and gauge), `shoal up --follow-desired` starts a node; load gone: it drains one', async function () {
    const cfg = writeConfig({
      min_size: 1, max_size: 2, initial_size: 1, acquire_timeout: '60s',
      auto_scaling: { enabled: false, scale_up_threshold: 0.8, stabilization_window: '2s' },
    }, 'autoscaler:\n  lease_ttl: 1s\n  interval: 200ms');
    // `shoal up` runs its own nats-server.
    await nats.stop();
    const port = await (await import('../helpers/nats-server.js')).freePort();
    // Roles on, as `shoal up` runs by default: this test listens as admin and leases as a client.
    const creds = mkdtempSync(join(tmpdir(), 'shoal-as-creds-'));
    const up = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), 'up', '--config', cfg, '--nodes', '1', '--port', String(port), '--data-dir', 'tmp', '--creds-dir', creds, '--http-port', '0', '--json', '--follow-desired', 'synthetic', '--stop-timeout', '8000'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    const events: Record<string, unknown>[] = [];
    let buf = '';
    up.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); try { events.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not JSON */ } }
    });
    let upErr = '';
    up.stderr!.on('data', (d: Buffer) => { upErr += d.toString(); });
    const exited = new Promise<number | null>((r) => up.once('exit', (c) => r(c)));
    try {
      await until('shoal up ready', () => (events.some((e) => e.event === 'ready') ? true : undefined), 60_000).catch((e: Error) => { throw new Error(`${e.message}: ${upErr}`); });
      const url = `nats://127.0.0.1:${port}`;
      const nc2 = await natsConnect({ servers: url, authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(join(creds, 'admin.nk'), 'utf8').trim())) });
      const c2 = await connect({ servers: [url], name: 'it2', nats: { nkeySeedFile: join(creds, 'client.nk') } });
      const desired: number[] = [];
      nc2.subscribe(s.autoscalerDesired('synthetic'), { callback: (_e, m) => { desired.push(Number(decode(m.data).desired)); } });
      try {
        await until('a desired count', () => (desired.length > 0 ? true : undefined));
        expect(desired.at(-1)).to.equal(1);
        // node-1 holds 2: full; a third acquire waits.
        const held = [await c2.acquire('synthetic', { ttlMs: 120_000 }), await c2.acquire('synthetic', { ttlMs: 120_000 })];
        const waiting = c2.acquire('synthetic', { nodeId: 'node-1', timeoutMs: 60_000, ttlMs: 120_000 });
        await until('desired 2', () => (desired.at(-1) === 2 ? true : undefined));
        const started = await until('node-2 started by follow-desired', () => events.find((e) => e.event === 'started' && e.name === 'node-2'), 60_000);
        expect(started.cause).to.equal('follow-desired');
        const ready = events.find((e) => e.event === 'ready') as { children: { name: string; httpPort: number | null }[] };
        const as = ready.children.find((c) => c.name === 'autoscaler');
        expect(as?.httpPort, 'shoal up started the autoscaler').to.be.a('number');
        const gauge = await metric(Number(as!.httpPort), /^shoal_desired_pool_nodes\{.*pool="synthetic"/);
        expect(gauge).to.equal(2);
        // Load gone: back to 1 desired after the stabilization window, and a node is drained.
        for (const l of held) await l.release();
        await (await waiting).release();
        await until('desired back to 1', () => (desired.at(-1) === 1 ? true : undefined));
        await until('a node drained', () => events.find((e) => e.event === 'exit' && e.name === 'node-2'), 60_000);
      } finally {
        await c2.close().catch(() => {});
        await nc2.close().catch(() => {});
      }
    } finally {
      up.kill('SIGTERM');
      const t = setTimeout(() => up.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
      rmSync(creds, { recursive: true, force: true });
    }
    // Re-start a server for afterEach.
    nats = await startNatsServer();
  });

  it('autoscaler.interval spaces the leader\'s ticks (desired pool-nodes published once per tick); autoscaler.lease_ttl is the leader lease: a follower takes over no sooner', async () => {
    const cfg = writeConfig({ min_size: 1, max_size: 4, initial_size: 1, auto_scaling: { enabled: true } }, 'autoscaler:\n  lease_ttl: 6s\n  interval: 1500ms');
    await node(cfg, 'n1');
    const ticks: number[] = [];
    const sub = nc.subscribe(s.autoscalerDesired('synthetic'), { callback: (_e, m) => { ticks.push(Number(decode(m.data).at)); } });
    const a1 = autoscaler(cfg, 'as-1');
    await elected(a1);
    await until('5 ticks', () => (ticks.length >= 5 ? true : undefined));
    sub.unsubscribe();
    // The first comes at election; then the timer, which fires no sooner than its interval however loaded the machine (the default 1 s would fail this).
    for (let i = 2; i < ticks.length; i++) expect(ticks[i]! - ticks[i - 1]!, `tick times ${JSON.stringify(ticks)}`).to.be.at.least(1450);

    // The lease is the leader bucket's max_age.
    const info = await (await nc.jetstreamManager()).streams.info(`KV_${AUTOSCALER_LEADER_BUCKET}`);
    expect(info.config.max_age).to.equal(6000 * 1e6);
    const a2 = autoscaler(cfg, 'as-2');
    await a2.waitFor((l) => l.msg === 'listening');
    // Kill the leader right after a renewal, so that its lease has most of its 6 s left.
    const kv = await nc.jetstream().views.kv(AUTOSCALER_LEADER_BUCKET);
    const rev0 = (await kv.get('leader'))?.revision ?? 0;
    await until('a renewal', async () => (((await kv.get('leader'))?.revision ?? 0) > rev0 ? true : undefined));
    const killedAt = Date.now();
    a1.proc.kill('SIGKILL');
    const e2 = await elected(a2);
    const tookMs = Date.parse(String(e2.ts)) - killedAt;
    // The server expires the lease no sooner than 6 s after that renewal (the default 2 s lease would be gone in 2.5 s).
    expect(tookMs, `takeover after ${tookMs} ms`).to.be.at.least(3500);
  });
});

/** Run one `shoal` command to its end (bounded). */
function shoal(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), ...args], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`shoal ${args.join(' ')} did not finish; stderr: ${stderr}`)); }, 30_000);
    p.once('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}
