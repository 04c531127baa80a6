/**
 * The claude-cli driver's benchmark (called by bench/run.ts; runnable alone:
 * node --import tsx -e "import('./bench/claude.ts').then(m=>m.runClaudeBench({quick:true,log:console.error})).then(r=>console.log(r))").
 * The stand-in CLI (test/stand-ins/claude) is the command; each subject is
 * measured against a bare baseline in the same run, runs alternating.
 *
 * - claude-stream: one session streaming a turn of N partial-message events
 *   as fast as the stand-in writes them. Subject: through a pool-node process
 *   and NATS to an SDK client (`for await` on `lease.exec('send', {content,
 *   raw: true})`: the lines of each stdout read as one text event, which the
 *   client splits and JSON.parses). Baseline: this process reading the
 *   stand-in's stdout itself (split + JSON.parse per line): the same work at
 *   the receiving end. Throughput = events/s over the turn; ratio = subject /
 *   baseline (goal >= 0.9). The default mode (one parsed object per event)
 *   is measured too (`messages_*`). Added latency: a paced turn (one event
 *   every `pace` ms) in the default mode, each event stamped by the stand-in
 *   (`ts`) and compared with the time it is seen; subject minus baseline.
 * - claude-warmup: 50 sessions created by a Pool with the claude-cli driver
 *   (spawn + initialize answered, all in parallel), against spawning the same
 *   50 processes with the same arguments and environment and waiting for the
 *   same answers; ratio of creation rates (goal >= 0.9).
 * - heap_bytes_per_idle_session: heap of the pool side per idle session,
 *   used once and reset (bench/procs/claude-heap.ts); goal <= 100 KB.
 * - claude-affinity: the acquire latency of a parked conversation
 *   (`acquire {park: key}` → the same session, context intact; released with
 *   `park` again; the SDK that parked it asks the key's node directly) against
 *   a warm acquire through a balancer process (an idle, reset session) and a
 *   cold one (a pool that never reuses: spawn + initialize per acquire).
 *   Goals: parked p50 within 1.2x of warm, and at least 10x faster than cold.
 *   Also measured, without a goal: the hit of a client that did not park the
 *   key (no direct try: the balancer routes it from the node's heartbeat).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect } from '@shoal/client';
import { Pool, systemClock, type Driver, type PoolSettings } from '@shoal/pool-node';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.js';
import { buildArgs, buildEnv, claudeCliDriver, parseOptions, type ClaudeSession } from '../services/pool-node/src/drivers/claude-cli/index.js';
import { onExitKill, ROOT, spawnNode, type Child } from './lib/procs.js';
import { median, percentile, ratio, round, sortedCopy } from './lib/stats.js';

const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');
const GOALS = { streamRatio: 0.9, warmupRatio: 0.9, heapBytes: 100 * 1024, affinityVsWarm: 1.2, affinityVsCold: 10 };

interface StreamRun { events: number; ms: number; eventsPerS: number; lat: number[] }

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runClaudeBench(opts: { quick: boolean; log: (s: string) => void }): Promise<Record<string, unknown>[]> {
  const { quick, log } = opts;
  const T = quick
    ? { tokens: 10_000, pairs: 1, paced: 200, pace: 2, sessions: 20, warmPairs: 1, heapN: 20 }
    : { tokens: 100_000, pairs: 3, paced: 1000, pace: 2, sessions: 50, warmPairs: 3, heapN: 50 };
  const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-claude-'));
  const home = join(tmp, 'home');
  const out: Record<string, unknown>[] = [];
  let nats: NatsServer | undefined;
  let node: Child | undefined;
  let unregister = () => {};
  try {
    // ---- heap ---------------------------------------------------------------
    log(`claude heap: ${T.heapN} idle sessions in an in-process pool`);
    const h = spawnNode('claude-heap', 'bench/procs/claude-heap.ts', { nodeArgs: ['--expose-gc', '--import', 'tsx'], args: [STAND_IN, tmp, String(T.heapN)] });
    const hl = await h.waitFor((l) => typeof l.perSession === 'number', 120_000);
    await h.exited;
    const heap = round(hl.perSession as number);
    out.push({ figure: 'heap_bytes_per_idle_session', value: heap, goal: GOALS.heapBytes, met: heap <= GOALS.heapBytes, n: hl.n });

    // ---- warm-up --------------------------------------------------------------
    out.push(await warmup(T.sessions, T.warmPairs, home, tmp, log));

    // ---- stream ---------------------------------------------------------------
    nats = await startNatsServer({ jetstream: false });
    unregister = onExitKill(() => nats?.proc.kill('SIGKILL'));
    const cfg = join(tmp, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '1s', drain_grace: '1s' },
      pools: {
        claude: {
          driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1,
          resource_limits: { max_memory_per_session: '2GB', max_total_memory: '8GB', max_payload: '1MB' },
          session_management: { context_reset: false },
          options: { command: STAND_IN, cwd_root: join(tmp, 'sessions'), env: { STANDIN_STAMP: '1' }, include_partial_messages: true },
        },
      },
    }));
    node = spawnNode('pool-node-claude', 'services/pool-node/dist/main.js', { env: { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' } });
    const nodeId = String((await node.waitFor((l) => l.msg === 'listening', 30_000)).nodeId);
    const client = await connect({ servers: [nats.url], name: 'bench-claude' });
    const lease = await client.acquire('claude', { nodeId, timeoutMs: 10_000, ttlMs: 600_000 });

    const viaPool = async (content: string, raw = false): Promise<StreamRun> => {
      const lat: number[] = [];
      let events = 0;
      const seen = (m: { ts?: number }) => { if (m.ts !== undefined) { lat.push(now() - m.ts); events++; } };
      const t0 = now();
      const call = lease.exec('send', { content, raw }, { timeoutMs: 120_000 });
      for await (const e of call) {
        if (typeof e !== 'string') { seen(e as { ts?: number }); continue; }
        let start = 0;
        for (let i = e.indexOf('\n'); i >= 0; i = e.indexOf('\n', start)) { seen(JSON.parse(e.slice(start, i))); start = i + 1; }
      }
      await call.result;
      const ms = now() - t0;
      return { events, ms, eventsPerS: (events / ms) * 1000, lat };
    };
    const direct = await directSession(home, tmp);
    const viaStdout = (content: string) => direct.turn(content);

    const full = `[[tokens=${T.tokens}]]`;
    const paced = `[[tokens=${T.paced}]] [[delay=${T.pace}]]`;
    log('claude-stream: warm-up');
    await viaStdout(`[[tokens=${Math.min(5000, T.tokens)}]]`);
    await viaPool(`[[tokens=${Math.min(5000, T.tokens)}]]`);
    await viaPool(`[[tokens=${Math.min(5000, T.tokens)}]]`, true);
    const base: StreamRun[] = [];
    const subj: StreamRun[] = [];
    const msgs: StreamRun[] = [];
    const baseLat: number[] = [];
    const subjLat: number[] = [];
    for (let i = 0; i < T.pairs; i++) {
      const b = await viaStdout(full);
      const s = await viaPool(full, true);
      const m = await viaPool(full);
      base.push(b);
      subj.push(s);
      msgs.push(m);
      log(`claude-stream pair ${i + 1}/${T.pairs}: direct ${Math.round(b.eventsPerS)} ev/s | through shoal, raw ${Math.round(s.eventsPerS)} ev/s (${s.events} events), messages ${Math.round(m.eventsPerS)} ev/s`);
      baseLat.push(...(await viaStdout(paced)).lat);
      subjLat.push(...(await viaPool(paced)).lat);
    }
    const bs = sortedCopy(baseLat);
    const ss = sortedCopy(subjLat);
    const eps = median(subj.map((r) => r.eventsPerS));
    const beps = median(base.map((r) => r.eventsPerS));
    const q = ratio(eps, beps);
    const us = (ms: number) => round(ms * 1000);
    out.push({
      scenario: 'claude-stream', events_per_turn: T.tokens,
      events_per_s: round(eps), baseline_events_per_s: round(beps), ratio: round(q, 3), goal: GOALS.streamRatio, met: q >= GOALS.streamRatio,
      pair_ratios: subj.map((s, i) => round(ratio(s.eventsPerS, base[i]!.eventsPerS), 3)), mode: 'raw',
      messages_events_per_s: round(median(msgs.map((r) => r.eventsPerS))), messages_ratio: round(ratio(median(msgs.map((r) => r.eventsPerS)), beps), 3),
      paced_every_ms: T.pace, latency_samples: ss.length,
      p50_us: us(percentile(ss, 50)), p99_us: us(percentile(ss, 99)),
      baseline_p50_us: us(percentile(bs, 50)), baseline_p99_us: us(percentile(bs, 99)),
      added_p50_us: us(percentile(ss, 50) - percentile(bs, 50)), added_p99_us: us(percentile(ss, 99) - percentile(bs, 99)),
      runs: subj.length, events_seen: subj.map((s) => s.events),
    });
    await direct.close();
    await lease.release();
    await client.close();
    await node.stop('SIGTERM', 10_000);
    node = undefined;
    await nats.stop().catch(() => {});
    nats = undefined;

    // ---- affinity ---------------------------------------------------------------
    out.push(await affinity(quick, tmp, log));
  } finally {
    await node?.stop('SIGTERM', 10_000);
    await nats?.stop().catch(() => {});
    unregister();
    rmSync(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
  return out;
}

/** The baseline of claude-stream: the stand-in spawned and read by this process, the same flags as the driver's. */
async function directSession(home: string, tmp: string): Promise<{ turn(content: string): Promise<StreamRun>; close(): Promise<void> }> {
  const o = parseOptions({ include_partial_messages: true, env: { STANDIN_STAMP: '1' } });
  const p = spawn(STAND_IN, buildArgs(o, { sessionId: randomUUID() }), { cwd: tmp, env: buildEnv(o, process.env, { home, configDir: join(home, '.claude') }), stdio: ['pipe', 'pipe', 'inherit'] });
  p.stdout!.setEncoding('utf8');
  let onLine: (m: Record<string, unknown>) => void = () => {};
  let buf = '';
  p.stdout!.on('data', (d: string) => {
    buf += d;
    let start = 0;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n', start)) {
      const line = buf.slice(start, i);
      start = i + 1;
      try { onLine(JSON.parse(line)); } catch { /* not JSON */ }
    }
    buf = buf.slice(start);
  });
  const write = (o: unknown) => p.stdin!.write(JSON.stringify(o) + '\n');
  await new Promise<void>((resolve) => { onLine = (m) => { if (m.type === 'control_response') resolve(); }; write({ type: 'control_request', request_id: 'req_1_bench', request: { subtype: 'initialize', hooks: null } }); });
  return {
    turn(content) {
      return new Promise((resolve) => {
        const lat: number[] = [];
        let events = 0;
        const t0 = now();
        onLine = (m) => {
          if (typeof m.ts === 'number') { lat.push(now() - m.ts); events++; }
          if (m.type === 'result') { const ms = now() - t0; resolve({ events, ms, eventsPerS: (events / ms) * 1000, lat }); }
        };
        write({ type: 'user', message: { role: 'user', content }, parent_tool_use_id: null, session_id: 'default' });
      });
    },
    async close() {
      p.stdin!.end();
      await new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)));
    },
  };
}

/** claude-warmup: N sessions warmed by a Pool with the driver vs N bare spawns waiting for the same initialize answer. */
async function warmup(n: number, pairs: number, home: string, tmp: string, log: (s: string) => void): Promise<Record<string, unknown>> {
  const options = { command: STAND_IN, cwd_root: join(tmp, 'warm'), include_partial_messages: true, stop_grace: '1s' };
  const settings: PoolSettings = {
    name: 'claude', minSize: 0, maxSize: n, initialSize: n, maxWaitingClients: 1000, acquireTimeoutMs: 60_000, leaseTtlMs: 60_000, weight: 1,
    sessionManagement: { enableReuse: true, idleTimeoutMs: 3_600_000, maxLifetimeMs: 3_600_000, lifetimeJitter: 0.1, maxReuseCount: 100, contextReset: true, cleanupIntervalMs: 0, validateOnReturn: true, validateSkipWindowMs: 500, maxParked: 16, parkTtlMs: 600_000 },
    create: { timeoutMs: 60_000, retryBaseMs: 100, retryMaxMs: 10_000 },
    resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: 0 },
    // All n at once, as the baseline spawns them: this measures the pool's own cost, not the
    // claude-cli default cap (max_concurrent_creates 4), which would make the ratio about 4/n.
    maxConcurrentCreates: n,
  };
  const viaPool = async (): Promise<number> => {
    const driver = claudeCliDriver({ clock: systemClock, random: Math.random, poolName: 'claude', options }) as Driver<ClaudeSession>;
    const pool = new Pool(settings, driver, systemClock);
    const t0 = performance.now();
    await pool.start();
    const ms = performance.now() - t0;
    if (pool.numbers().idle !== n) throw new Error(`claude-warmup: expected ${n} idle sessions, got ${JSON.stringify(pool.numbers())}`);
    await pool.close();
    return ms;
  };
  const bare = async (): Promise<number> => {
    const o = parseOptions(options);
    const env = buildEnv(o);
    const t0 = performance.now();
    const procs = await Promise.all(Array.from({ length: n }, () => new Promise<ReturnType<typeof spawn>>((resolve, reject) => {
      const p = spawn(STAND_IN, buildArgs(o, { sessionId: randomUUID() }), { cwd: tmp, env, stdio: ['pipe', 'pipe', 'ignore'], detached: true });
      p.once('error', reject);
      p.stdout!.setEncoding('utf8');
      let buf = '';
      p.stdout!.on('data', (d: string) => { buf += d; if (buf.includes('"control_response"')) resolve(p); });
      p.stdin!.write(JSON.stringify({ type: 'control_request', request_id: 'req_1_bare', request: { subtype: 'initialize', hooks: null } }) + '\n');
    })));
    const ms = performance.now() - t0;
    await Promise.all(procs.map((p) => new Promise((r) => { p.once('exit', r); p.stdin!.end(); })));
    return ms;
  };
  log(`claude-warmup: ${n} sessions, warm-up`);
  await bare();
  await viaPool();
  const b: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < pairs; i++) {
    b.push(await bare());
    await sleep(200);
    s.push(await viaPool());
    await sleep(200);
    log(`claude-warmup pair ${i + 1}/${pairs}: bare ${Math.round(b[i]!)} ms | pool ${Math.round(s[i]!)} ms for ${n}`);
  }
  const rate = (ms: number) => (n / ms) * 1000;
  const sr = median(s.map(rate));
  const br = median(b.map(rate));
  const q = ratio(sr, br);
  return {
    scenario: 'claude-warmup', sessions: n,
    sessions_per_s: round(sr, 1), baseline_sessions_per_s: round(br, 1), ratio: round(q, 3), goal: GOALS.warmupRatio, met: q >= GOALS.warmupRatio,
    ms: s.map((x) => round(x)), baseline_ms: b.map((x) => round(x)), runs: s.length,
  };
}

/**
 * claude-affinity: parked re-acquire (straight to the key's node) vs warm
 * acquire and cold start through a balancer; and the hit other clients get
 * (a key parked by another client, routed by a balancer from the heartbeat).
 */
export async function affinity(quick: boolean, tmp: string, log: (s: string) => void): Promise<Record<string, unknown>> {
  const N = quick ? { warm: 60, parked: 60, routed: 30, cold: 4 } : { warm: 300, parked: 300, routed: 100, cold: 10 };
  const nats = await startNatsServer();
  const unregister = onExitKill(() => nats.proc.kill('SIGKILL'));
  const kids: Child[] = [];
  try {
    const cfg = join(tmp, 'affinity.yaml');
    const opts = { command: STAND_IN, cwd_root: join(tmp, 'affinity'), stop_grace: '300ms' };
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '100ms', drain_grace: '1s' },
      pools: {
        // No max_reuse_count: the idle pool hands out its last-used session, which would reach the default 100 uses
        // (warm cycles + parked cycles) mid-run and be recycled on a release with park: a miss that measures recycling, not parking.
        chat: { driver: 'claude-cli', min_size: 2, max_size: 2, initial_size: 2, session_management: { max_reuse_count: 0 }, resource_limits: { max_memory_per_session: '2GB', max_total_memory: '8GB' }, options: opts },
        cold: { driver: 'claude-cli', min_size: 0, max_size: 1, initial_size: 0, session_management: { enable_reuse: false }, resource_limits: { max_memory_per_session: '2GB', max_total_memory: '8GB' }, create: { timeout: '30s' }, options: opts },
      },
    }));
    const node = spawnNode('pool-node-affinity', 'services/pool-node/dist/main.js', { env: { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' } });
    kids.push(node);
    await node.waitFor((l) => l.msg === 'listening', 30_000);
    const bal = spawnNode('balancer-affinity', 'services/balancer/dist/main.js', { env: { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' } });
    kids.push(bal);
    await bal.waitFor((l) => l.msg === 'listening', 30_000);
    const client = await connect({ servers: [nats.url], name: 'bench-affinity' });
    for (let i = 0; i < 100; i++) {
      if (await client.acquire('chat', { timeoutMs: 2000 }).then(async (l) => { await l.release(); return true; }, () => false)) break;
      await sleep(100);
    }
    // Both kinds wait the same short gap between cycles, so that the previous release (a reset, or parking) is done.
    const gap = 15;
    const warm: number[] = [];
    for (let i = 0; i < N.warm; i++) {
      const t0 = now();
      const l = await client.acquire('chat', { timeoutMs: 10_000 });
      warm.push(now() - t0);
      await l.release();
      await sleep(gap);
    }
    const parked: number[] = [];
    let hits = 0;
    const first = await client.acquire('chat', { timeoutMs: 10_000 });
    await first.exec('send', { content: 'remember me' });
    await first.release({ park: 'bench-conv' });
    await sleep(300); // the key in a heartbeat
    for (let i = 0; i < N.parked; i++) {
      const t0 = now();
      const l = await client.acquire('chat', { timeoutMs: 10_000, park: 'bench-conv' });
      parked.push(now() - t0);
      if (l.parked === 'hit') hits++;
      await l.release({ park: 'bench-conv' });
      await sleep(gap);
    }
    const check = await client.acquire('chat', { timeoutMs: 10_000, park: 'bench-conv' });
    const carried = String(((await check.exec('send', { content: 'still there?' })) as { result?: string }).result).includes('first: "remember me"');
    await check.release();
    // Another client's hit: a key it never parked (so no direct try), routed by the balancer from the node's heartbeat.
    const other = await connect({ servers: [nats.url], name: 'bench-affinity-other' });
    const routed: number[] = [];
    let routedHits = 0;
    for (let i = 0; i < N.routed; i++) {
      const key = `bench-routed-${i}`;
      const mine = await client.acquire('chat', { timeoutMs: 10_000 });
      await mine.release({ park: key });
      await sleep(300); // the key in a heartbeat (every 100 ms here)
      const t0 = now();
      const l = await other.acquire('chat', { timeoutMs: 10_000, park: key });
      routed.push(now() - t0);
      if (l.parked === 'hit') routedHits++;
      await l.release();
      await sleep(gap);
    }
    await other.close();
    const cold: number[] = [];
    for (let i = 0; i < N.cold; i++) {
      const t0 = now();
      const l = await client.acquire('cold', { timeoutMs: 30_000 });
      cold.push(now() - t0);
      await l.release();
    }
    await client.close();
    const w = sortedCopy(warm);
    const p = sortedCopy(parked);
    const c = sortedCopy(cold);
    const r = sortedCopy(routed);
    const vsWarm = ratio(percentile(p, 50), percentile(w, 50));
    const vsCold = ratio(percentile(c, 50), percentile(p, 50));
    log(`claude-affinity: parked p50 ${percentile(p, 50).toFixed(2)} ms (hits ${hits}/${N.parked}), routed p50 ${percentile(r, 50).toFixed(2)} ms (hits ${routedHits}/${N.routed}), warm p50 ${percentile(w, 50).toFixed(2)} ms, cold p50 ${percentile(c, 50).toFixed(0)} ms`);
    return {
      scenario: 'claude-affinity',
      parked_p50_ms: round(percentile(p, 50), 3), parked_p99_ms: round(percentile(p, 99), 3),
      routed_p50_ms: round(percentile(r, 50), 3), routed_p99_ms: round(percentile(r, 99), 3), routed_hit_rate: round(routedHits / N.routed, 3),
      warm_p50_ms: round(percentile(w, 50), 3), warm_p99_ms: round(percentile(w, 99), 3),
      cold_p50_ms: round(percentile(c, 50), 1), cold_p99_ms: round(percentile(c, 99), 1),
      parked_vs_warm: round(vsWarm, 3), cold_vs_parked: round(vsCold, 1),
      goal: `parked <= ${GOALS.affinityVsWarm}x warm, >= ${GOALS.affinityVsCold}x faster than cold`,
      met: vsWarm <= GOALS.affinityVsWarm && vsCold >= GOALS.affinityVsCold,
      hit_rate: round(hits / N.parked, 3), context_carried: carried, samples: { warm: w.length, parked: p.length, routed: r.length, cold: c.length },
    };
  } finally {
    for (const k of kids.reverse()) await k.stop('SIGTERM', 10_000).catch(() => {});
    await nats.stop().catch(() => {});
    unregister();
  }
}
