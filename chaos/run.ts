/**
 * `npm run chaos [-- --short] [-- --only=node-kill,balancer-kill,nats-restart,fuzz,attacks]`
 *
 * Shoal under faults and attacks, everything on loopback: one nats-server
 * with roles on (as `shoal up` makes it), 3 pool-nodes and 2 balancers as OS
 * processes, SDK clients under load. Each scenario prints one JSON line with
 * its figures and, beside each, the goal it must meet; the exit code is 1 if
 * any goal is missed. `--short` (CI, `.ci/run`) keeps the whole run under two
 * minutes. See docs/reliability.md.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { addClient, authConfig, ensureCreds, type Credential } from '@shoal/cli';
import { connect, type Client } from '@shoal/client';
import { encode, PROTOCOL_VERSION, subjects, type ShoalError } from '@shoal/protocol';
import { call, connectNats, inboxPrefixOf, type NatsConnection } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.js';
import { onExitKill, onInterrupt, spawnNode, stopAll, type Child } from '../bench/lib/procs.js';

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const hit = argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  return hit === undefined ? undefined : hit.includes('=') ? hit.slice(hit.indexOf('=') + 1) : '';
};
const SHORT = flag('short') !== undefined;
const ONLY = flag('only')?.split(',').filter(Boolean);
const want = (s: string) => !ONLY || ONLY.includes(s);

const T = SHORT
  ? { nodeKillMs: 25_000, killEveryMs: 10_000, balancerMs: 8_000, natsMs: 8_000, outageMs: 1000, fuzzPerSubject: 10_000, guesses: 500 }
  : { nodeKillMs: 180_000, killEveryMs: 10_000, balancerMs: 20_000, natsMs: 20_000, outageMs: 3000, fuzzPerSubject: 20_000, guesses: 5000 };
const POOL = 'synthetic';
const HEARTBEAT = '250ms';
const CONCURRENCY = 8;
const TIMEOUT_MS = 3000;
/** A request is "unanswered" if no answer (result or typed error) came by its deadline plus this. */
const LATE_MS = 500;
/** The SDK's own deadline for renew and release. */
const LEASE_OP_TIMEOUT_MS = 5000;
const s = subjects('shoal');

const t0 = performance.now();
const progress = (msg: string) => process.stderr.write(`[chaos ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let missed = 0;

/** One figure and its goal: `ok` says whether the goal is met. */
interface Figure { value: unknown; goal: string; ok: boolean }
const fig = (value: unknown, goal: string, ok: boolean): Figure => ({ value, goal, ok });
const info = (value: unknown): Figure => ({ value, goal: '-', ok: true });

function report(scenario: string, figures: Record<string, Figure>, extra: Record<string, unknown> = {}): void {
  const failed = Object.entries(figures).filter(([, f]) => !f.ok).map(([k]) => k);
  missed += failed.length;
  process.stdout.write(JSON.stringify({ scenario, ok: failed.length === 0, ...(failed.length ? { missed: failed } : {}), figures, ...extra }) + '\n');
}

// ---- the cluster -----------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'shoal-chaos-'));
const credsDir = join(tmp, 'creds');
ensureCreds(credsDir);
addClient(credsDir, 'b');
const creds: Credential[] = ensureCreds(credsDir);
const seed = (name: string) => creds.find((c) => c.name === name)!.seedFile;
const configFile = join(tmp, 'node.yaml');
writeFileSync(configFile, [
  'node:', `  heartbeat_interval: ${HEARTBEAT}`, '  drain_grace: 2s',
  'pools:', '  synthetic:', '    driver: synthetic', '    min_size: 2', '    initial_size: 2', '    max_size: 8', '    lease_ttl: 10s', '',
].join('\n'));

let nats: NatsServer;
let port = 0;
const nodes = new Map<string, Child>();
const balancers = new Map<string, Child>();
/** Processes we killed on purpose: any other exit is a crash. */
const expectedExits = new Set<Child>();
const crashes: string[] = [];

function watch(c: Child): Child {
  void c.exited.then((code) => { if (!expectedExits.has(c)) crashes.push(`${c.name} exited ${code}: ${c.stderr().slice(-300)}`); });
  return c;
}

async function startNats(): Promise<void> {
  nats = await startNatsServer({ jetstream: true, port: port || undefined, conf: authConfig(creds, 'shoal') });
  port = nats.port;
  onExitKill(() => nats.proc.kill('SIGKILL'));
}

async function startNode(id: string): Promise<Child> {
  const c = watch(spawnNode(id, 'services/pool-node/dist/main.js', { env: { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: configFile, SHOAL_NODE_ID: id, SHOAL_HTTP_PORT: '-1', SHOAL_NATS_NKEY_SEED_FILE: seed('pool-node'), SHOAL_LOG_LEVEL: 'info' } }));
  nodes.set(id, c);
  await c.waitFor((l) => l.msg === 'listening' || l.msg === 'pool-node ready', 20_000).catch(() => sleep(1500));
  return c;
}

async function startBalancer(id: string): Promise<Child> {
  const c = watch(spawnNode(id, 'services/balancer/dist/main.js', { env: { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: configFile, SHOAL_BALANCER_ID: id, SHOAL_HTTP_PORT: '-1', SHOAL_NATS_NKEY_SEED_FILE: seed('balancer'), SHOAL_LOG_LEVEL: 'info' } }));
  balancers.set(id, c);
  await c.waitFor((l) => l.msg === 'listening' || l.msg === 'balancer ready', 20_000).catch(() => sleep(1500));
  return c;
}

async function kill(c: Child): Promise<void> {
  expectedExits.add(c);
  await c.stop('SIGKILL', 0);
}

let admin: NatsConnection;
const as = (name: string) => connectNats({ servers: [nats.url], nkeySeedFile: seed(name), name: `chaos-${name}` });

interface NodeStatus { nodeId: string; draining: boolean; pools: Record<string, { active: number; total: number; max: number }> }
async function nodeStatuses(): Promise<NodeStatus[]> {
  const out: NodeStatus[] = [];
  for (const id of nodes.keys()) out.push(await call<NodeStatus>(admin, s.nodeStatus(id), {}, 2000));
  return out;
}

// ---- load ------------------------------------------------------------------

interface Outcome { startedAt: number; ms: number; ok: boolean; code?: string; stage: 'acquire' | 'exec' | 'release' }

/** `CONCURRENCY` loops of acquire → exec → release through the balancers until `stop()`. */
async function load(client: Client, stop: () => boolean): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const timed = async <T>(stage: Outcome['stage'], f: () => Promise<T>): Promise<T | undefined> => {
    const startedAt = Date.now();
    try {
      const v = await f();
      out.push({ startedAt, ms: Date.now() - startedAt, ok: true, stage });
      return v;
    } catch (err) {
      out.push({ startedAt, ms: Date.now() - startedAt, ok: false, code: (err as ShoalError).code ?? 'UNTYPED', stage });
      return undefined;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (!stop()) {
      const lease = await timed('acquire', () => client.acquire(POOL, { timeoutMs: TIMEOUT_MS, ttlMs: 5000 }));
      if (!lease) { await sleep(20); continue; }
      await timed('exec', async () => await lease.exec('echo', { n: 1 }, { timeoutMs: TIMEOUT_MS }));
      await timed('release', () => lease.release());
    }
  }));
  return out;
}

function loadFigures(out: Outcome[]): Record<string, Figure> {
  const byCode: Record<string, number> = {};
  for (const o of out) if (!o.ok) byCode[`${o.stage}:${o.code}`] = (byCode[`${o.stage}:${o.code}`] ?? 0) + 1;
  const late = out.filter((o) => o.ms > (o.stage === 'release' ? LEASE_OP_TIMEOUT_MS : TIMEOUT_MS) + LATE_MS).length;
  const untyped = out.filter((o) => o.code === 'UNTYPED').length;
  return {
    requests: info(out.length),
    ok: info(out.filter((o) => o.ok).length),
    failedByStageAndCode: info(byCode),
    unansweredPastDeadline: fig(late, `0 requests answered later than deadline + ${LATE_MS} ms`, late === 0),
    untypedErrors: fig(untyped, '0 errors without a Shoal code', untyped === 0),
  };
}

/** After the load: every lease back on every node (no leak), resources within limits. */
async function leakFigures(): Promise<Record<string, Figure>> {
  let active = -1;
  let overMax = 0;
  for (let i = 0; i < 40; i++) {
    try {
      const st = await nodeStatuses();
      active = st.reduce((a, n) => a + (n.pools[POOL]?.active ?? 0), 0);
      overMax = st.filter((n) => (n.pools[POOL]?.total ?? 0) > (n.pools[POOL]?.max ?? 0)).length;
      if (active === 0) break;
    } catch { /* a node still restarting */ }
    await sleep(250);
  }
  return {
    leasesLeftActive: fig(active, '0 leases still active after the load stopped', active === 0),
    nodesOverMax: fig(overMax, '0 nodes over max_size', overMax === 0),
  };
}

function crashFigure(): Figure {
  return fig(crashes.length, '0 processes crashed', crashes.length === 0);
}

// ---- scenarios -------------------------------------------------------------

async function nodeKill(client: Client): Promise<void> {
  progress(`node-kill: ${T.nodeKillMs / 1000} s of SDK load, a pool-node SIGKILLed every ${T.killEveryMs / 1000} s and restarted`);
  const until = Date.now() + T.nodeKillMs;
  let kills = 0;
  const killer = (async () => {
    while (Date.now() + T.killEveryMs < until) {
      await sleep(T.killEveryMs);
      const id = [...nodes.keys()][kills % nodes.size]!;
      await kill(nodes.get(id)!);
      kills++;
      await sleep(500);
      await startNode(id);
    }
  })();
  const out = await load(client, () => Date.now() > until);
  await killer;
  report('node-kill', { kills: info(kills), ...loadFigures(out), ...(await leakFigures()), crashes: crashFigure() });
}

async function balancerKill(client: Client): Promise<void> {
  progress(`balancer-kill: ${T.balancerMs / 1000} s of load, one balancer SIGKILLed midway and restarted`);
  const until = Date.now() + T.balancerMs;
  const killer = (async () => {
    await sleep(T.balancerMs / 3);
    await kill(balancers.get('b1')!);
    await sleep(1000);
    await startBalancer('b1');
  })();
  const out = await load(client, () => Date.now() > until);
  await killer;
  report('balancer-kill', { ...loadFigures(out), ...(await leakFigures()), crashes: crashFigure() });
}

async function natsRestart(client: Client, nc: NatsConnection): Promise<void> {
  progress(`nats-restart: load, nats-server stopped for ${T.outageMs} ms and started again on the same port`);
  let cutAt = 0;
  let reconnectedAt = 0;
  void (async () => { for await (const st of nc.status()) if (st.type === 'reconnect' && cutAt) reconnectedAt ||= Date.now(); })();
  const until = Date.now() + T.natsMs;
  const restarter = (async () => {
    await sleep(T.natsMs / 3);
    cutAt = Date.now();
    // SIGKILL: nothing is drained or flushed, as in a crash. JetStream state is lost (a new store): the KV bucket is recreated.
    nats.proc.kill('SIGKILL');
    await new Promise((r) => nats.proc.once('exit', r));
    await sleep(T.outageMs);
    await startNats();
  })();
  const out = await load(client, () => Date.now() > until);
  await restarter;
  // Acquires that started once this client was connected again must all succeed (the balancers wait for fresh heartbeats).
  const after = out.filter((o) => o.stage === 'acquire' && reconnectedAt > 0 && o.startedAt >= reconnectedAt);
  const failedAfter = after.filter((o) => !o.ok);
  const duringCut = out.filter((o) => !o.ok && o.startedAt < (reconnectedAt || Infinity)).length;
  report('nats-restart', {
    ...loadFigures(out),
    failedBeforeReconnect: info(duringCut),
    acquiresAfterReconnect: info(after.length),
    acquiresFailedAfterReconnect: fig(failedAfter.map((o) => o.code), '0 acquires failed after the client reconnected', failedAfter.length === 0 && reconnectedAt > 0),
    ...(await leakFigures()),
    crashes: crashFigure(),
  });
}

/** Malformed messages: random bytes, wrong types, wrong versions, deep nesting; never a valid request. */
function* malformed(n: number): Generator<Uint8Array> {
  const bad = [
    {}, { v: 99 }, { v: 'one' }, { pool: 5, timeoutMs: 'x' },
    { v: PROTOCOL_VERSION, pool: 5, leaseId: 7, secret: 9, strategy: 1, nodeId: 2, graceMs: 'x', op: 3, n: 'x', timeoutMs: 'x', leases: 'x', weight: 'x', seq: 'x', intervalMs: 'x' },
    { v: PROTOCOL_VERSION, pool: 'a.b', timeoutMs: -1, op: '', graceMs: -5, leases: 3, strategy: 'fastest', weight: -1, nodeId: 'x y', leaseId: '', n: -1, seq: -1 },
  ];
  const deep = Buffer.concat([Buffer.from([0x81, 0xa4]), Buffer.from('args'), Buffer.alloc(3000, 0x91), Buffer.from([0xc0])]);
  for (let i = 0; i < n; i++) {
    const k = i % 8;
    if (k === 0) yield Buffer.from(Array.from({ length: (i * 7919) % 600 }, (_, j) => (i * 31 + j * 17) & 0xff));
    else if (k === 1) yield deep;
    else if (k === 2) yield Buffer.from('{"v":1,"pool":"synthetic"}');
    else if (k === 3) yield encode([1, 2, 3]);
    else yield encode(bad[i % bad.length]);
  }
}

async function fuzz(): Promise<void> {
  // Every node runs the same code: in the short run one node's subjects stand for all.
  const nodeIds = SHORT ? ['n1'] : [...nodes.keys()];
  const targets = [
    s.poolAcquire(POOL), s.poolExec(POOL), s.poolAcquire('nope'), s.adminStrategy, s.adminWeight, s.adminStatus, s.adminBalancers, s.adminStatusOf('b1'),
    ...nodeIds.flatMap((id) => [s.nodeAcquire(id), s.nodeExec(id), s.leaseExec(id), s.leaseRenew(id), s.leaseRelease(id), s.nodeScale(id), s.nodeDrain(id), s.nodeStatus(id)]),
  ];
  progress(`fuzz: ${T.fuzzPerSubject} malformed messages to each of ${targets.length} subjects (admin role, the widest), and as many heartbeats (pool-node role)`);
  const strategyBefore = (await call<{ strategy: string }>(admin, s.adminStatus, {}, 3000)).strategy;
  const nodeRole = await as('pool-node');
  let sent = 0;
  let replies = 0;
  const replyTo = `${inboxPrefixOf(admin)}.fuzz.1`;
  const replySub = admin.subscribe(replyTo, { callback: () => { replies++; } });
  for (const subject of targets) {
    let i = 0;
    for (const m of malformed(T.fuzzPerSubject)) {
      admin.publish(subject, m, { reply: replyTo });
      sent++;
      if (++i % 2000 === 0) await admin.flush();
    }
    await admin.flush();
  }
  for (const id of [...nodeIds, 'phantom']) {
    let i = 0;
    for (const m of malformed(T.fuzzPerSubject)) {
      nodeRole.publish(s.heartbeat(id), m);
      sent++;
      if (++i % 2000 === 0) await nodeRole.flush();
    }
  }
  await nodeRole.flush();
  // The flood is queued in the services: it has drained when their error replies stop coming.
  const drainStart = Date.now();
  for (let quiet = 0, last = -1; quiet < 2 && Date.now() - drainStart < 60_000;) {
    await sleep(500);
    quiet = replies === last ? quiet + 1 : 0;
    last = replies;
  }
  replySub.unsubscribe();
  await nodeRole.close();
  const logLines: Record<string, Record<string, number>> = {};
  for (const c of [...nodes.values(), ...balancers.values()]) {
    const byMsg: Record<string, number> = {};
    for (const l of c.logs) byMsg[`${String(l.level)}:${String(l.msg)}`] = (byMsg[`${String(l.level)}:${String(l.msg)}`] ?? 0) + 1;
    logLines[c.name] = byMsg;
  }
  // Once it has drained they serve again, unchanged.
  const client = await connect({ nc: await as('client') });
  for (;;) {
    try { await (await client.acquire(POOL, { timeoutMs: 2000 })).release(); break; } catch { /* still busy */ }
    if (Date.now() - drainStart > 60_000) break;
  }
  const recoveredMs = Date.now() - drainStart;
  let served = 0;
  for (let i = 0; i < 10; i++) {
    try { await (await client.acquire(POOL, { timeoutMs: 3000 })).release(); served++; } catch { /* counted below */ }
  }
  await client.close();
  const st = await nodeStatuses();
  const status = await call<{ strategy: string; nodes: { nodeId: string }[] }>(admin, s.adminStatus, {}, 3000);
  report('fuzz', {
    malformedSent: fig(sent, '>= 10,000 per subject', sent >= T.fuzzPerSubject * (targets.length + nodeIds.length + 1)),
    typedRepliesReceived: info(replies),
    serviceBackWithinMs: fig(recoveredMs, 'the flood drained and an acquire served within 60 s of the last message sent', recoveredMs < 60_000),
    logLines: info(logLines),
    acquiresServedAfter: fig(served, '10 of 10 acquires served after the fuzz', served === 10),
    nodesDraining: fig(st.filter((n) => n.draining).length, '0 nodes drained by garbage', st.every((n) => !n.draining)),
    strategyUnchanged: fig(status.strategy === strategyBefore, 'strategy unchanged', status.strategy === strategyBefore),
    phantomNodes: fig(status.nodes.filter((n) => !nodes.has(n.nodeId)).length, '0 phantom nodes', status.nodes.every((n) => nodes.has(n.nodeId))),
    ...(await leakFigures()),
    crashes: crashFigure(),
  });
}

async function attacks(): Promise<void> {
  progress('attacks: a client forges heartbeats, tries another client\'s lease and every steering subject (roles on)');
  const victimNc = await as('client');
  const victim = await connect({ nc: victimNc });
  const attacker = await as('client-b');
  const lease = await victim.acquire(POOL, { timeoutMs: 5000 });
  let leaseSucceeded = 0;
  // Guesses: the lease id with no, random or near-miss secrets.
  for (let i = 0; i < T.guesses; i++) {
    const secret = i % 3 === 0 ? undefined : i % 3 === 1 ? Buffer.from(Array.from({ length: 16 }, () => Math.floor(Math.random() * 256))).toString('base64url') : lease.info.secret!.slice(0, 21) + 'ABCDEFGHIJ'[i % 10];
    const subject = [s.leaseRelease(lease.nodeId), s.leaseRenew(lease.nodeId), s.leaseExec(lease.nodeId)][i % 3]!;
    try {
      const body = secret === lease.info.secret ? undefined : { leaseId: lease.id, secret, op: 'echo', ttlMs: 1000 };
      if (!body) continue;
      await call(attacker, subject, body, 1000);
      leaseSucceeded++;
    } catch { /* refused: good */ }
  }
  const stillMine = await lease.exec('echo', 'mine').then((r) => r === 'mine', () => false);
  await lease.release();
  // Steering, KV, heartbeats, sniffing.
  const forbidden: [string, () => Promise<unknown>][] = [
    ['admin.strategy', () => call(attacker, s.adminStrategy, { strategy: 'round_robin' }, 800)],
    ['admin.weight', () => call(attacker, s.adminWeight, { nodeId: 'n1', weight: 0 }, 800)],
    ['node.scale', () => call(attacker, s.nodeScale('n1'), { pool: POOL, op: 'target', n: 0 }, 800)],
    ['node.drain', () => call(attacker, s.nodeDrain('n1'), {}, 800)],
    ['kv.put', async () => (await attacker.jetstream().views.kv('shoal_settings', { timeout: 800 })).put('strategy', '{"strategy":"round_robin"}')],
    ['heartbeat', async () => { attacker.publish(s.heartbeat('phantom2'), encode({ v: PROTOCOL_VERSION })); await attacker.flush(); throw new Error('checked below'); }],
  ];
  const allowed: string[] = [];
  for (const [name, f] of forbidden) {
    try { await f(); allowed.push(name); } catch { /* refused */ }
  }
  let sniffed = 0;
  let sniffRefused = false;
  const sub = attacker.subscribe('>', { callback: (err) => { if (err) sniffRefused = true; else sniffed++; } });
  await (await victim.acquire(POOL, { timeoutMs: 3000 })).release();
  await sleep(300);
  sub.unsubscribe();
  const status = await call<{ strategy: string; nodes: { nodeId: string; weight: number | null }[] }>(admin, s.adminStatus, {}, 3000);
  const st = await nodeStatuses();
  report('attacks', {
    leaseOpsByOthersSucceeded: fig(leaseSucceeded, `0 of ${T.guesses} tries on another client's lease succeed`, leaseSucceeded === 0),
    holderKeptLease: fig(stillMine, 'the holder still uses its lease', stillMine),
    forbiddenActionsAllowed: fig(allowed, 'every forbidden action refused', allowed.length === 0),
    phantomJoined: fig(status.nodes.some((n) => n.nodeId === 'phantom2'), 'a forged heartbeat joins no node', !status.nodes.some((n) => n.nodeId === 'phantom2')),
    settingsChanged: fig(status.nodes.some((n) => n.weight === 0) || st.some((n) => n.draining), 'no weight, drain or target changed', !status.nodes.some((n) => n.weight === 0) && !st.some((n) => n.draining)),
    sniffedMessages: fig(sniffed, 'a client subscribed to `>` reads nothing (subscription refused)', sniffed === 0 && sniffRefused),
  });
  await victim.close();
  await attacker.close();
}

// ---- main ------------------------------------------------------------------

async function main(): Promise<void> {
  onInterrupt(async () => { await stopAll(1000); await nats?.stop(); rmSync(tmp, { recursive: true, force: true }); });
  await startNats();
  progress(`nats-server with roles on at ${nats.url}`);
  for (const id of ['n1', 'n2', 'n3']) await startNode(id);
  for (const id of ['b1', 'b2']) await startBalancer(id);
  admin = await as('admin');
  const clientNc = await as('client');
  const client = await connect({ nc: clientNc });
  // Wait until both balancers place.
  for (let i = 0; i < 60; i++) {
    try { await (await client.acquire(POOL, { timeoutMs: 1000 })).release(); break; } catch { await sleep(250); }
  }
  if (want('attacks')) await attacks();
  if (want('fuzz')) await fuzz();
  if (want('node-kill')) await nodeKill(client);
  if (want('balancer-kill')) await balancerKill(client);
  if (want('nats-restart')) await natsRestart(client, clientNc);
  await client.close().catch(() => {});
  await admin.close().catch(() => {});
  for (const c of [...nodes.values(), ...balancers.values()]) expectedExits.add(c);
  await stopAll(3000);
  await nats.stop();
  rmSync(tmp, { recursive: true, force: true });
  progress(missed === 0 ? 'every goal met' : `${missed} goal(s) missed`);
  process.exit(missed === 0 ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(2);
});
