import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from 'nats';
import { chromium, type BrowserContext } from 'playwright-core';
import { encode, PROTOCOL_VERSION, readReply, subjects, type Lease } from '@shoal/protocol';
import { connectNats } from '@shoal/runtime';
import { freePort } from '../helpers/nats-server.js';
import { orHung, ROOT, sleep } from '../helpers/procs.js';

/**
 * The operator's view against a real `shoal up` cluster (3 pool-nodes, 2
 * balancers): the cluster-wide HTTP API's JSON, and the live status page in
 * a real headless Chromium (Debian's `chromium`, installed by
 * scripts/ensure-deps.sh), driven by playwright-core.
 */
const BIN = join(ROOT, 'bin/shoal.js');
const CHROMIUM = process.env.SHOAL_CHROMIUM ?? '/usr/bin/chromium';
const s = subjects('shoal');

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    let last: unknown;
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) { last = err; }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(100);
  }
}

/** Run one `shoal` command against the cluster to its end. */
function shoal(args: string[], natsUrl: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args, '--nats', natsUrl], { env: { ...process.env, NO_COLOR: '1', USER: 'tester' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`shoal ${args.join(' ')} hung; stderr: ${stderr}`)); }, 30_000);
    p.once('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  expect(r.status, url).to.equal(200);
  expect(r.headers.get('content-type')).to.match(/application\/json/);
  return (await r.json()) as T;
}

interface PoolStats { total: number; idle: number; active: number; creating: number; waiting: number; target: number; max: number }
interface NodeJson { nodeId: string; state: string; pid: number; draining: boolean; circuit: string; health: unknown; pools: Record<string, PoolStats> }
interface StatusJson { balancerId: string; at: number; strategy: string; nodes: NodeJson[]; pools: Record<string, PoolStats & { nodes: number; requestRate: number; latencyMs: number }>; settings: { values: { key: string }[] }; health: { running: boolean }; autoscaler: { running: boolean } }

describe('status page and cluster HTTP API (e2e: `shoal up`, 3 nodes, 2 balancers, headless Chromium)', function () {
  this.timeout(120_000);
  let up: ChildProcess;
  let out = '';
  let err = '';
  let dir: string;
  let base: string;
  let other: string;
  let nc: NatsConnection;
  let natsUrl: string;

  before(async function () {
    this.timeout(90_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-status-page-'));
    const cfg = join(dir, 'cluster.yaml');
    writeFileSync(cfg, [
      'node:', '  heartbeat_interval: 250ms', '  drain_grace: 1s',
      'pools:', '  synthetic:', '    driver: synthetic', '    min_size: 2', '    initial_size: 2', '    max_size: 8', '',
    ].join('\n'));
    const port = await freePort();
    // No autoscaler or health-checker of its own: the test writes the verdicts and targets the page must show,
    // and checks that an absent autoscaler reads "not running".
    up = spawn(process.execPath, [BIN, 'up', '--json', '--nodes', '3', '--balancers', '2', '--autoscalers', '0', '--health-checkers', '0', '--port', String(port), '--data-dir', join(dir, 'data')], {
      env: { ...process.env, NO_COLOR: '1', SHOAL_HTTP_PORT: '0', SHOAL_CONFIG: cfg },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    up.stdout!.on('data', (d) => { out += d; });
    up.stderr!.on('data', (d) => { err += d; });
    const ready = await until('shoal up ready', () => {
      if (up.exitCode !== null) throw new Error(`shoal up exited ${up.exitCode}: ${err}`);
      return out.split('\n').filter((l) => l.includes('"event":"ready"')).map((l) => JSON.parse(l) as { statusPage: string | null; children: { kind: string; httpPort: number | null }[] })[0];
    }, 60_000);
    expect(ready.statusPage, 'the ready event names the status page').to.match(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    base = ready.statusPage!.replace(/\/$/, '');
    const balancers = ready.children.filter((c) => c.kind === 'balancer' && c.httpPort);
    expect(balancers).to.have.length(2);
    other = `http://127.0.0.1:${balancers.find((b) => !base.endsWith(`:${b.httpPort}`))!.httpPort}`;
    natsUrl = `nats://127.0.0.1:${port}`;
    // Roles on, as `shoal up` runs: this test steers as admin (the key shoal up made in .shoal/creds).
    nc = await connectNats({ servers: [natsUrl], nkeySeedFile: join(ROOT, '.shoal', 'creds', 'admin.nk') });
    await until('3 nodes listed', async () => (await getJson<StatusJson>(`${base}/api/v1/session-pool/status`)).nodes.length === 3 || undefined, 20_000);
  });

  after(async () => {
    await nc?.close();
    if (up && up.exitCode === null) {
      up.kill('SIGINT');
      await orHung(new Promise((r) => up.once('exit', r)), 15_000);
      if (up.exitCode === null) up.kill('SIGKILL');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('GET /api/v1/session-pool/status: every node and pool, the same from either balancer', async () => {
    for (const url of [base, other]) {
      const st = await getJson<StatusJson>(`${url}/api/v1/session-pool/status`);
      expect(st.nodes.map((n) => n.nodeId).sort()).to.deep.equal(['node-1', 'node-2', 'node-3']);
      for (const n of st.nodes) {
        expect(n).to.include.keys('state', 'draining', 'circuit', 'health', 'pools', 'pid');
        expect(n.pools.synthetic).to.include.keys('total', 'idle', 'active', 'creating', 'waiting', 'target', 'max');
      }
      expect(st.pools.synthetic!.nodes).to.equal(3);
      expect(st.pools.synthetic!.total).to.equal(st.nodes.reduce((a, n) => a + n.pools.synthetic!.total, 0));
      expect(st.settings.values.map((r) => r.key)).to.include.members(['strategy', 'acquire_timeout']);
      expect(st.autoscaler.running).to.be.a('boolean');
      expect(st.health.running).to.be.a('boolean');
    }
  });

  it('GET /api/v1/session-pool/sessions: every resource with id, status, created_at, request_count and node', async () => {
    const r = await getJson<{ sessions: Record<string, unknown>[]; missing: string[] }>(`${base}/api/v1/session-pool/sessions`);
    expect(r.missing).to.deep.equal([]);
    const st = await getJson<StatusJson>(`${base}/api/v1/session-pool/status`);
    expect(r.sessions.length).to.be.at.least(6);
    expect(new Set(r.sessions.map((x) => x.node))).to.deep.equal(new Set(st.nodes.map((n) => n.nodeId)));
    for (const x of r.sessions) {
      expect(x).to.include.keys('id', 'status', 'created_at', 'request_count', 'node', 'pool');
      expect(Number.isNaN(Date.parse(String(x.created_at)))).to.equal(false);
    }
  });

  it('GET /api/v1/metrics (Prometheus text) and /vector-store/pool/stats (JSON)', async () => {
    const m = await fetch(`${base}/api/v1/metrics`);
    expect(m.status).to.equal(200);
    expect(await m.text()).to.match(/^# HELP shoal_/m);
    const v = await getJson<Record<string, unknown>>(`${base}/vector-store/pool/stats`);
    expect(v).to.be.an('object');
  });

  it('shoal status shows each setting\'s value and source; strategy, weight, settings reset and undrain work from the CLI', async () => {
    let st = await shoal(['status'], natsUrl);
    expect(st.code, st.stderr).to.equal(0);
    expect(st.stdout).to.match(/SETTING\s+FOR\s+VALUE\s+SOURCE/);
    expect(st.stdout).to.match(/strategy\s+synthetic\s+p2c\s+balancer\.strategy \(default\)/);
    expect(st.stdout).to.match(/acquire_timeout\s+synthetic\s+30000ms\s+default/);

    const bad = await shoal(['weight', 'node-9', '5'], natsUrl);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/no node node-9 is known/);

    expect((await shoal(['strategy', 'round_robin'], natsUrl)).code).to.equal(0);
    st = await shoal(['status'], natsUrl);
    expect(st.stdout).to.match(/strategy\s+synthetic\s+round_robin\s+runtime\s+\S+@\S+ at \d{4}-/);
    const reset = await shoal(['settings', 'reset'], natsUrl);
    expect(reset.code, reset.stderr).to.equal(0);
    expect(reset.stdout).to.contain('back to the config: strategy');
    await until('the strategy back to the config', async () => /synthetic\s+p2c\s+balancer\.strategy/.test((await shoal(['status'], natsUrl)).stdout) || undefined, 10_000);

    // A held lease keeps the drain in its grace period (with none, it would finish at once and undrain would restart the pool).
    const lease = readReply<Lease>((await nc.request(s.nodeAcquire('node-1'), encode({ v: PROTOCOL_VERSION, pool: 'synthetic', timeoutMs: 3000 }), { timeout: 5000 })).data);
    expect((await shoal(['drain', 'node-1', '--grace', '60000'], natsUrl)).code).to.equal(0);
    await until('node-1 draining', async () => (await getJson<StatusJson>(`${base}/api/v1/session-pool/status`)).nodes.find((n) => n.nodeId === 'node-1')!.draining || undefined, 10_000);
    const un = await shoal(['undrain', 'node-1'], natsUrl);
    expect(un.code, un.stderr).to.equal(0);
    expect(un.stdout).to.contain('node-1 takes work again (synthetic: resumed)');
    readReply((await nc.request(s.leaseRelease('node-1'), encode({ v: PROTOCOL_VERSION, leaseId: lease.leaseId, secret: lease.secret }), { timeout: 5000 })).data);
    await until('node-1 not draining', async () => !(await getJson<StatusJson>(`${base}/api/v1/session-pool/status`)).nodes.find((n) => n.nodeId === 'node-1')!.draining || undefined, 10_000);
  });

  it('shows health verdicts (subject and settings bucket) and autoscaler targets from the bucket; an absent autoscaler is "not running"', async () => {
    const kv = await nc.jetstream().views.kv('shoal_settings');
    const now = Date.now();
    await kv.put('health.node-1', JSON.stringify({ v: 1, nodeId: 'node-1', healthy: false, at: now, since: now, checkerId: 'test', reason: 'probe timed out', checks: [], pools: {} }));
    await kv.put('target.synthetic', JSON.stringify({ target: 3, by: 'test' }));
    nc.publish('shoal.health.verdict.node-2', encode({ v: 1, nodeId: 'node-2', healthy: true, at: now, since: now, checkerId: 'test', checks: [{ type: 'ping', ok: true }], pools: {} }));
    const st = await until('verdicts and targets in the status', async () => {
      const j = await getJson<StatusJson & { autoscaler: { targets: Record<string, unknown> } }>(`${base}/api/v1/session-pool/status`);
      const h = (id: string) => (j.nodes.find((n) => n.nodeId === id)?.health as { healthy?: boolean } | null)?.healthy;
      return h('node-1') === false && h('node-2') === true && j.autoscaler.targets.synthetic ? j : undefined;
    }, 10_000);
    expect(st.health.running).to.equal(true);
    expect(st.autoscaler.running).to.equal(false);
    expect(st.autoscaler.targets).to.deep.equal({ synthetic: { target: 3, by: 'test' } });
    // The bucket entry reached both replicas (each watches the whole bucket).
    await until('the other replica too', async () => ((await getJson<StatusJson>(`${other}/api/v1/session-pool/status`)).nodes.find((n) => n.nodeId === 'node-1')?.health as { healthy?: boolean } | null)?.healthy === false || undefined, 10_000);
  });

  it('the page lists every node and pool, shows a scale change and a SIGKILLed node within 2 s, without console errors', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} (apt-get install chromium; scripts/ensure-deps.sh)`).to.equal(true);
    const profile = mkdtempSync(join(tmpdir(), 'shoal-chromium-'));
    let browser: BrowserContext | undefined;
    try {
      // A fresh profile (playwright passes it as --user-data-dir).
      browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1280, height: 900 },
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('console', (msg) => { if (msg.type() === 'error') problems.push(msg.text()); });
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(base + '/');
      await page.waitForFunction(() => document.querySelectorAll('#nodes td[data-node]').length === 3, undefined, { timeout: 10_000 });
      const listed = await page.$$eval('#nodes td[data-node]', (tds) => tds.map((td) => td.getAttribute('data-node')).sort());
      expect(listed).to.deep.equal(['node-1', 'node-2', 'node-3']);
      expect(await page.$$eval('#nodes tr[data-pool="synthetic"]', (trs) => trs.length)).to.equal(3);
      expect(await page.$eval('#conn', (e) => e.textContent)).to.equal('live');
      // Verdicts and the autoscaler panel (not running here, but its targets from the bucket are shown).
      await page.waitForFunction(() => document.querySelector('#nodes td[data-node="node-1"] ~ td .pill')?.textContent === 'unhealthy', undefined, { timeout: 5000 });
      expect(await page.$eval('#autoscaler', (e) => e.textContent)).to.match(/not running.*synthetic/s);

      // A scale change: node-2's target goes to 5; the page shows it within 2 s of the node's answer.
      readReply(( await nc.request(s.nodeScale('node-2'), encode({ v: PROTOCOL_VERSION, pool: 'synthetic', op: 'target', n: 5 }), { timeout: 5000 })).data);
      await page.waitForFunction(() => document.querySelector('#nodes tr[data-of="node-2"] td.target')?.textContent === '5', undefined, { timeout: 2000 });

      // The chart: acquires through the balancer show as a rate above 0 (the nodes' heartbeat figures).
      for (let i = 0; i < 20; i++) {
        const l = readReply<Lease>((await nc.request(s.poolAcquire('synthetic'), encode({ v: PROTOCOL_VERSION, pool: 'synthetic', timeoutMs: 3000 }), { timeout: 5000 })).data);
        readReply((await nc.request(s.leaseRelease(l.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: l.leaseId, secret: l.secret }), { timeout: 5000 })).data);
      }
      await page.waitForFunction(() => parseFloat(document.getElementById('chartnow')?.textContent ?? '0') > 0, undefined, { timeout: 5000 });

      // A SIGKILLed node: no more heartbeats; it turns suspect (3 missed beats of 250 ms) and the page says so within 2 s of that.
      const st = await getJson<StatusJson>(`${base}/api/v1/session-pool/status`);
      const victim = st.nodes.find((n) => n.nodeId === 'node-3')!;
      process.kill(victim.pid, 'SIGKILL');
      await page.waitForFunction(() => document.querySelector('#nodes td[data-node="node-3"] + td')?.getAttribute('data-state') !== 'alive', undefined, { timeout: 750 + 2000 });

      // An autoscaler (a stand-in answering its status subject, with the autoscaler's key) and its desired pool-nodes.
      const asNc = await connectNats({ servers: [natsUrl], nkeySeedFile: join(ROOT, '.shoal', 'creds', 'autoscaler.nk') });
      const fake = asNc.subscribe('shoal.autoscaler.status', { callback: (_e, m) => m.respond(encode({ v: PROTOCOL_VERSION, ok: true, data: { leader: 'as-test', epoch: 2, decisions: [{ pool: 'synthetic', action: 'hold' }] } })) });
      asNc.publish('shoal.autoscaler.desired.synthetic', encode({ v: PROTOCOL_VERSION, pool: 'synthetic', nodes: 4 }));
      await page.waitForFunction(() => /leader as-test/.test(document.getElementById('autoscaler')?.textContent ?? '') && /desired pool-nodes/.test(document.getElementById('autoscaler')?.textContent ?? ''), undefined, { timeout: 6000 });
      const auto = await getJson<{ autoscaler: { running: boolean; desired: Record<string, unknown> } }>(`${base}/api/v1/session-pool/status`);
      expect(auto.autoscaler.running).to.equal(true);
      expect(auto.autoscaler.desired.synthetic).to.deep.include({ nodes: 4 });

      // Leases with their holder, age and TTL (asked from the nodes every 2 s while the page is open).
      readReply((await nc.request(s.nodeAcquire('node-1'), encode({ v: PROTOCOL_VERSION, pool: 'synthetic', timeoutMs: 3000, ttlMs: 60_000, holder: { client: 'status-page-test', host: 'ci', pid: 1 } }), { timeout: 5000 })).data);
      await page.waitForFunction(() => document.querySelector('#leases')?.textContent?.includes('status-page-test / ci / 1') === true, undefined, { timeout: 6000 });

      const shots = join(ROOT, '.shoal');
      mkdirSync(shots, { recursive: true });
      const png = join(shots, 'status-page.png');
      await page.screenshot({ path: png, fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      const phone = join(shots, 'status-page-phone.png');
      await page.screenshot({ path: phone, fullPage: true });
      process.stdout.write(`      screenshots: ${png} ${phone}\n`);
      fake.unsubscribe();
      await asNc.close();
      expect(problems).to.deep.equal([]);
    } finally {
      await browser?.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
