/**
 * Issue 9's figures: what a node's death and a backend outage cost callers.
 *
 * - `lease_lost_notice_ms` {p50, max}: from a pool-node's SIGKILL to each
 *   holder's running exec rejecting with LEASE_LOST (SDK holders in this
 *   process, heartbeats at the default 1 s), over rounds where the node does
 *   not come back, comes back under a new id, and under the same id. Goal <= 3000.
 * - `acquire_failed_on_node_death`: acquires (through a balancer, 2 s
 *   deadline, closed loop at concurrency 16) that failed when one of 3 nodes
 *   was SIGKILLed under load. Goal 0.
 * - `backend_down_fail_ms` {p50, p99}: with the Weaviate stand-in stopped,
 *   time to the retryable error of acquires and one-shot execs, direct and
 *   through the balancer (5 s deadline). Goal p99 <= 1000.
 * - `backend_heal_ms`: stand-in back -> first successful exec, with the pool's
 *   health interval at 1 s and `create.retry_max` 30 s. Goal <= 1000 (one interval).
 *
 * run.ts calls runHealthBench (`--only=health`); alone:
 *   node --import tsx bench/health.ts [--quick]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { connect, type Client, type Lease } from '@shoal/client';
import { ShoalError, subjects } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.js';
import { startWeaviateStandIn, type WeaviateStandIn } from '../test/stand-ins/weaviate/server.js';
import { spawnNode, type Child } from './lib/procs.js';
import { round } from './lib/stats.js';

const HEALTH_INTERVAL_MS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

export async function runHealthBench(opts: { quick: boolean; log: (s: string) => void }): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const log = opts.log;
  const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-health-'));
  const children: Child[] = [];
  const clients: Client[] = [];
  let nats: NatsServer | undefined;
  let standIn: WeaviateStandIn | undefined;
  const synthetic = (name: string, size: number, hb = '1s') => {
    const f = join(tmp, `${name}.yaml`);
    writeFileSync(f, JSON.stringify({ node: { heartbeat_interval: hb, drain_grace: '500ms' }, pools: { synthetic: { driver: 'synthetic', min_size: size, max_size: size, initial_size: size, options: { create_latency: 0, exec_latency: 0 } } } }));
    return f;
  };
  const start = async (name: string, file: string, id?: string): Promise<Child & { nodeId: string }> => {
    const c = spawnNode(name, 'services/pool-node/dist/main.js', { env: { SHOAL_NATS_URL: nats!.url, SHOAL_CONFIG: file, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info', ...(id ? { SHOAL_NODE_ID: id } : {}) } });
    children.push(c);
    const l = await c.waitFor((x) => x.msg === 'listening', 30_000);
    return Object.assign(c, { nodeId: String(l.nodeId) });
  };
  const balancer = async (file: string): Promise<Child> => {
    const b = spawnNode('balancer', 'services/balancer/dist/main.js', { env: { SHOAL_NATS_URL: nats!.url, SHOAL_CONFIG: file, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' } });
    children.push(b);
    await b.waitFor((x) => x.msg === 'listening', 30_000);
    return b;
  };
  const stopChildren = async () => { await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL', 1000))); };

  try {
    nats = await startNatsServer({ jetstream: false });
    const client = await connect({ servers: [nats.url], name: 'bench-health', timeoutMs: 5000 });
    clients.push(client);

    // ---- lease_lost_notice_ms ------------------------------------------------
    const notices: number[] = [];
    const modes = ['none', 'new_id', 'same_id'] as const;
    const rounds = opts.quick ? 3 : 9;
    const holders = 4;
    const file = synthetic('holders', holders);
    for (let r = 0; r < rounds; r++) {
      const mode = modes[r % modes.length]!;
      const id = `victim-${r}`;
      const node = await start(id, file, id);
      const hs: Client[] = [];
      for (let i = 0; i < holders; i++) hs.push(await connect({ servers: [nats.url], name: `holder-${i}` }));
      clients.push(...hs);
      const leases: Lease[] = await Promise.all(hs.map((h) => h.acquire('synthetic', { nodeId: id, ttlMs: 60_000 })));
      const done = leases.map((l) => Promise.resolve(l.exec('sleep', { ms: 60_000 }, { timeoutMs: 30_000 })).then(() => ({ ok: true, at: Date.now(), code: '' }), (e: unknown) => ({ ok: false, at: Date.now(), code: (e as ShoalError).code })));
      await sleep(200);
      const killedAt = Date.now();
      await node.stop('SIGKILL', 0);
      if (mode === 'new_id') await start(`${id}-new`, file);
      if (mode === 'same_id') await start(`${id}-again`, file, id);
      for (const d of await Promise.all(done)) {
        if (d.code !== 'LEASE_LOST') log(`health: a holder ended with ${d.ok ? 'success' : d.code}, not LEASE_LOST`);
        notices.push(d.at - killedAt);
      }
      await Promise.all(hs.map((h) => h.close().catch(() => {})));
      await stopChildren();
      log(`health: lease lost round ${r + 1}/${rounds} (${mode}): ${notices.slice(-holders).join(', ')} ms`);
    }
    out.push({ figure: 'lease_lost_notice_ms', p50: round(quantile(notices, 0.5)), max: round(Math.max(...notices)), n: notices.length, heartbeat_ms: 1000, goal: 3000, met: Math.max(...notices) <= 3000 });

    // ---- acquire_failed_on_node_death ----------------------------------------
    {
      const f = synthetic('three', 4);
      const nodes = [await start('n1', f), await start('n2', f), await start('n3', f)];
      await balancer(f);
      const loadClient = await connect({ servers: [nats.url], name: 'bench-load' });
      clients.push(loadClient);
      let failed = 0;
      let ok = 0;
      const codes: Record<string, number> = {};
      let stop = false;
      const worker = async () => {
        while (!stop) {
          try {
            const l = await loadClient.acquire('synthetic', { timeoutMs: 2000 });
            // Hold it a little: queues form, so acquires are in flight on the node that dies.
            await sleep(20);
            await l.release().catch(() => {});
            ok++;
          } catch (e) {
            failed++;
            const c = (e as ShoalError).code;
            codes[c] = (codes[c] ?? 0) + 1;
          }
        }
      };
      const workers = Array.from({ length: 16 }, worker);
      await sleep(opts.quick ? 1000 : 3000);
      const before = failed;
      await nodes[0]!.stop('SIGKILL', 0);
      await sleep(opts.quick ? 3000 : 6000);
      stop = true;
      await Promise.all(workers);
      out.push({ figure: 'acquire_failed_on_node_death', failed: failed - before, failed_before_kill: before, ok, codes, nodes: 3, concurrency: 16, deadline_ms: 2000, goal: 0, met: failed === 0 });
      await stopChildren();
    }

    // ---- backend_down_fail_ms, backend_heal_ms ---------------------------------
    {
      standIn = await startWeaviateStandIn();
      const f = join(tmp, 'weaviate.yaml');
      writeFileSync(f, JSON.stringify({
        node: { heartbeat_interval: '1s', drain_grace: '500ms' },
        pools: { weaviate: {
          driver: 'weaviate', min_size: 1, max_size: 4, initial_size: 1,
          load_balancing: { health_check_interval: `${HEALTH_INTERVAL_MS}ms` },
          create: { timeout: '3s', retry_base: '1s', retry_max: '30s' },
          options: { host: '127.0.0.1', port: standIn.httpPort, grpc_port: standIn.grpcPort, health_check_interval: '60s' },
        } },
      }));
      const node = await start('wv', f);
      await balancer(f);
      for (let i = 0; i < 100; i++) {
        if (await client.exec('weaviate', 'collections.listAll', {}, { timeoutMs: 1000 }).then(() => true, () => false)) break;
        await sleep(100);
      }
      const timings: number[] = [];
      const notRetryable: string[] = [];
      await standIn.down();
      const downAt = Date.now();
      const direct = { nodeId: node.nodeId, timeoutMs: 5000 };
      const via = { timeoutMs: 5000 };
      const calls = [
        () => client.acquire('weaviate', direct), () => client.acquire('weaviate', via),
        () => client.exec('weaviate', 'collections.listAll', {}, direct), () => client.exec('weaviate', 'collections.listAll', {}, via),
      ];
      // From the moment Weaviate stops: every call, including those before the pool's probe knows.
      while (Date.now() - downAt < (opts.quick ? 3000 : 8000)) {
        for (const c of calls) {
          const t0 = Date.now();
          const r = await Promise.resolve(c()).then((v) => v, (e: unknown) => e as ShoalError);
          if (r instanceof ShoalError) {
            timings.push(Date.now() - t0);
            if (!r.retryable) notRetryable.push(r.code);
          } else if (r && typeof (r as Lease).release === 'function') await (r as Lease).release().catch(() => {});
        }
      }
      const st = await call<{ pools: Record<string, { available: boolean }> }>(client.nc, subjects().nodeStatus(node.nodeId), {}, 2000);
      out.push({ figure: 'backend_down_fail_ms', p50: round(quantile(timings, 0.5)), p99: round(quantile(timings, 0.99)), max: round(Math.max(...timings)), n: timings.length, not_retryable: notRetryable.length, pool_available: st.pools.weaviate?.available, goal: 1000, met: quantile(timings, 0.99) <= 1000 });
      // Heal: the first cycle after the long outage above, then shorter ones (the pool learns, then Weaviate returns).
      const heals: number[] = [];
      for (let cycle = 0; cycle < (opts.quick ? 1 : 4); cycle++) {
        if (cycle > 0) {
          await standIn.down();
          await sleep(2500 + 700 * cycle); // different phases against the probe's period
        }
        await standIn.up();
        const back = Date.now();
        let healMs = -1;
        while (Date.now() - back < 35_000) {
          if (await client.exec('weaviate', 'collections.listAll', {}, { nodeId: node.nodeId, timeoutMs: 1000 }).then(() => true, () => false)) { healMs = Date.now() - back; break; }
          await sleep(20);
        }
        heals.push(healMs);
      }
      const worst = heals.some((h) => h < 0) ? -1 : Math.max(...heals);
      out.push({ figure: 'backend_heal_ms', max: worst, samples: heals, health_interval_ms: HEALTH_INTERVAL_MS, retry_max_ms: 30_000, goal: HEALTH_INTERVAL_MS, met: worst >= 0 && worst <= HEALTH_INTERVAL_MS });
    }
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await stopChildren();
    await standIn?.close().catch(() => {});
    await nats?.stop().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  runHealthBench({ quick, log: (s) => process.stderr.write(s + '\n') }).then((lines) => {
    for (const l of lines) process.stdout.write(JSON.stringify(l) + '\n');
    process.exit(0);
  }, (err: unknown) => {
    process.stderr.write(`bench health failed: ${(err as Error).stack}\n`);
    process.exit(1);
  });
}
