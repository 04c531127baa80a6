import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client } from '@shoal/client';
import { ShoalError, subjects } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';
import { spawnWeaviateStandIn, type StandInProcess } from '../stand-ins/weaviate/process.js';

/**
 * Issue 9, item 5 and 6: a pool whose backend is known down answers at once
 * with a retryable typed error (directly and through a balancer), and is
 * served again one health interval after the backend returns, although its
 * create backoff has grown to the example config's retry_max (30 s). A Claude
 * pool whose real CLI is not logged in says so, and a failing turn fails.
 */
const POOL = 'weaviate';
const HEALTH_INTERVAL_MS = 1000;
const errorOf = (p: PromiseLike<unknown>): Promise<ShoalError> => Promise.resolve(p).then(() => { throw new Error('expected the call to fail'); }, (e: unknown) => e as ShoalError);

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

describe('fail fast, heal fast (integration: Weaviate stand-in, pool-node, balancer, SDK)', function () {
  this.timeout(90_000);
  let nats: NatsServer;
  let weaviate: StandInProcess;
  let client: Client;
  let dir: string;
  let node: Service & { nodeId: string };
  let balancer: Service;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-failfast-it-'));
    [nats, weaviate] = await Promise.all([startNatsServer({ jetstream: false }), spawnWeaviateStandIn()]);
    client = await connect({ servers: [nats.url], name: 'failfast-it', timeoutMs: 5000 });
    const file = join(dir, 'node.yaml');
    writeFileSync(file, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      pools: {
        [POOL]: {
          driver: 'weaviate', min_size: 1, max_size: 4, initial_size: 1, acquire_timeout: '5s',
          load_balancing: { health_check_interval: `${HEALTH_INTERVAL_MS}ms` },
          // The example config's backoff: while Weaviate is down, one connect attempt per 30 s at most.
          create: { timeout: '3s', retry_base: '1s', retry_max: '30s' },
          session_management: { context_reset: false },
          // The driver's own connection check finds the dead connection and the pool replaces it: creates fail and back off.
          options: { host: '127.0.0.1', port: weaviate.httpPort, grpc_port: weaviate.grpcPort, health_check_interval: '500ms' },
        },
      },
    }));
    [node, balancer] = await Promise.all([
      startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: 'ff-1', SHOAL_LOG_LEVEL: 'debug' }),
      (async () => {
        const b = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info' });
        await b.waitFor((l) => l.msg === 'listening');
        return b;
      })(),
    ]);
    await until('served through the balancer', () => client.exec(POOL, 'collections.listAll', {}, { timeoutMs: 1000 }).then(() => true), 15_000);
  });

  after(async () => {
    await client?.close();
    await Promise.all([node, balancer].map((s) => s?.kill('SIGKILL')));
    await weaviate?.kill();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('Weaviate stopped: acquires and execs fail in < 1 s with a retryable WEAVIATE_UNAVAILABLE, direct and through the balancer; back: served within one health interval despite retry_max 30 s', async () => {
    await weaviate.kill('SIGKILL');
    // The pool knows within one health interval (its probe), or sooner (an op that found Weaviate gone).
    await until('the pool reports itself unavailable', async () => {
      const st = await call<{ pools: Record<string, { available: boolean }> }>(client.nc, subjects().nodeStatus(node.nodeId), {}, 2000);
      return st.pools[POOL]!.available === false ? true : undefined;
    }, HEALTH_INTERVAL_MS + 4000);
    const direct = { nodeId: node.nodeId, timeoutMs: 5000 };
    const viaBalancer = { timeoutMs: 5000 };
    const calls: [string, () => PromiseLike<unknown>][] = [
      ['acquire direct', () => client.acquire(POOL, direct)],
      ['acquire via balancer', () => client.acquire(POOL, viaBalancer)],
      ['exec direct', () => client.exec(POOL, 'collections.listAll', {}, direct)],
      ['exec via balancer', () => client.exec(POOL, 'collections.listAll', {}, viaBalancer)],
    ];
    const downUntil = Date.now() + 3000;
    let rounds = 0;
    while (Date.now() < downUntil || rounds < 2) {
      for (const [what, f] of calls) {
        const t0 = Date.now();
        const e = await errorOf(f());
        const took = Date.now() - t0;
        expect(e.code, `${what}: ${e.message}`).to.equal('WEAVIATE_UNAVAILABLE');
        expect(e.retryable, what).to.equal(true);
        expect(e.details?.backend, what).to.equal('weaviate');
        // A behaviour bound of the issue ("at once", not at the 5 s deadline), with slack for a loaded machine.
        expect(took, `${what} took ${took} ms`).to.be.below(1000);
      }
      rounds++;
      await sleep(250);
    }
    weaviate = await weaviate.restart();
    const back = Date.now();
    await until('served again', () => client.exec(POOL, 'collections.listAll', {}, { timeoutMs: 1000 }).then(() => true), HEALTH_INTERVAL_MS + 5000);
    const healMs = Date.now() - back;
    const lease = await client.acquire(POOL, { timeoutMs: 2000 });
    await lease.release();
    expect(healMs, `healed after ${healMs} ms`).to.be.below(HEALTH_INTERVAL_MS + 3000);
    expect(node.logs.some((l) => l.msg === 'backend back' && l.how === 'probe')).to.equal(true);
  });

  it('a pool started while Weaviate is down (creates failing, backoff grown towards retry_max 30 s) is served within one health interval of its return', async () => {
    await weaviate.kill('SIGKILL');
    const other = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: join(dir, 'node.yaml'), SHOAL_NODE_ID: 'ff-2', SHOAL_LOG_LEVEL: 'debug' });
    try {
      const e = await errorOf(client.acquire(POOL, { nodeId: 'ff-2', timeoutMs: 5000 }));
      expect(e.code).to.equal('WEAVIATE_UNAVAILABLE');
      // Let the backoff grow (1, 2, 4, 8 s...) well past the health interval.
      await until('the create backoff grew past two health intervals', async () => {
        const waits = other.logs.filter((l) => l.msg === 'create failed').map((l) => Number(l.retryInMs));
        return Math.max(0, ...waits) > 2 * HEALTH_INTERVAL_MS ? true : undefined;
      }, 20_000);
      const lastFail = Date.now();
      weaviate = await weaviate.restart();
      const back = Date.now();
      await until('served again', () => client.acquire(POOL, { nodeId: 'ff-2', timeoutMs: 1000 }).then((l) => l.release()).then(() => true), HEALTH_INTERVAL_MS + 5000);
      const healMs = Date.now() - back;
      const nextCreate = other.logs.filter((l) => l.msg === 'create failed').map((l) => Number(l.retryInMs)).at(-1)!;
      expect(healMs, `healed after ${healMs} ms; the backoff would have waited up to ${nextCreate - (back - lastFail)} ms more`).to.be.below(HEALTH_INTERVAL_MS + 3000);
      expect(other.logs.some((l) => l.msg === 'backend back' && l.how === 'probe')).to.equal(true);
    } finally {
      await other.kill('SIGKILL');
    }
  });
});

describe('claude pool with the real CLI not logged in (integration)', function () {
  this.timeout(120_000);
  const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');
  const STANDIN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');
  let nats: NatsServer;
  let client: Client;
  let dir: string;
  let node: Service | undefined;

  before(async () => {
    expect(existsSync(CLAUDE), 'the dev dependency @anthropic-ai/claude-code').to.equal(true);
    dir = mkdtempSync(join(tmpdir(), 'shoal-claude-auth-'));
    mkdirSync(join(dir, 'home'));
    nats = await startNatsServer({ jetstream: false });
    client = await connect({ servers: [nats.url], name: 'claude-auth-it' });
  });
  after(async () => {
    await node?.kill('SIGKILL');
    await client?.close();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  });

  const shoal = (args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), ...args, '--nats', nats.url], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });

  it('the pool is unavailable with the reason and how to fix it; acquires and `shoal exec` fail at once, non-zero', async () => {
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      pools: {
        claude: {
          driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1,
          create: { timeout: '45s', retry_base: '1s', retry_max: '30s' },
          options: { command: CLAUDE, cwd_root: join(dir, 'work') },
        },
      },
    }));
    // No credentials at all: an empty HOME, no ANTHROPIC_API_KEY / CLAUDE_CODE_OAUTH_TOKEN.
    const env: Record<string, string> = { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info', HOME: join(dir, 'home'), SHOAL_NODE_ID: 'claude-1' };
    node = startService('services/pool-node/dist/main.js', env);
    await node.waitFor((l) => l.msg === 'listening', 60_000);
    const st = await until('the pool says it is unavailable', async () => {
      const s = await call<{ pools: Record<string, { available: boolean; reason?: string }> }>(client.nc, subjects().nodeStatus('claude-1'), {}, 3000);
      return s.pools.claude!.available === false ? s.pools.claude! : undefined;
    }, 30_000);
    expect(st.reason).to.match(/not logged in/i);
    expect(st.reason).to.contain('ANTHROPIC_API_KEY');
    const t0 = Date.now();
    const e = await errorOf(client.acquire('claude', { nodeId: 'claude-1', timeoutMs: 10_000 }));
    expect(e.code).to.equal('POOL_UNAVAILABLE');
    expect(e.retryable).to.equal(true);
    expect(e.message).to.match(/not logged in/i);
    expect(Date.now() - t0).to.be.below(5000);
    const r = await shoal(['exec', 'claude', 'send', '{"content":"hi"}', '--node', 'claude-1']);
    expect(r.code, r.stderr).to.not.equal(0);
    expect(r.stderr).to.match(/POOL_UNAVAILABLE.*not logged in/i);
  });

  it('a turn whose result says is_error fails: a typed error carrying the line, and `shoal exec` exits non-zero', async () => {
    await node?.kill('SIGKILL');
    const cfg = join(dir, 'standin.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      pools: { claude: { driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1, options: { command: STANDIN, cwd_root: join(dir, 'work2') } } },
    }));
    node = startService('services/pool-node/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info', HOME: join(dir, 'home'), SHOAL_NODE_ID: 'claude-2' });
    await node.waitFor((l) => l.msg === 'listening', 60_000);
    const e = await errorOf(client.exec('claude', 'send', { content: 'hello [[error]]' }, { nodeId: 'claude-2', timeoutMs: 20_000 }));
    expect(e.code, e.message).to.equal('DRIVER_ERROR');
    expect(e.details?.result).to.include({ type: 'result', is_error: true });
    const ok = await client.exec('claude', 'send', { content: 'hello' }, { nodeId: 'claude-2', timeoutMs: 20_000 }) as { is_error: boolean };
    expect(ok.is_error).to.equal(false);
    const r = await shoal(['exec', 'claude', 'send', '{"content":"again [[error]]"}', '--node', 'claude-2']);
    expect(r.code, r.stdout).to.equal(1);
    expect(r.stderr).to.match(/DRIVER_ERROR: claude turn failed/);
  });
});
