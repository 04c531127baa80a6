import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactLog, parseArgs, table, UsageError } from '@shoal/cli';
import { freePort } from '../helpers/nats-server.js';
import { ROOT, sleep, runShoal as shoal } from '../helpers/procs.js';

const BIN = join(ROOT, 'bin/shoal.js');




const alive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};

/** What ps says of a process (to name one left behind). */
function psLine(pid: number): string {
  try { return execFileSync('ps', ['-o', 'pid=,ppid=,stat=,lstart=,args=', '-p', String(pid)], { encoding: 'utf8' }).trim(); } catch { return 'gone'; }
}

/** Every descendant of a process (children, their children, ...), from ps. */
function descendants(pid: number): number[] {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' }).trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  const out: number[] = [];
  const walk = (p: number) => { for (const [c, pp] of rows) if (pp === p && c !== undefined) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 8000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('shoal CLI (pure parts)', () => {
  it('parses flags before and after positionals, with = and negative numbers', () => {
    const specs = { hold: { type: 'number' as const, help: '' }, json: { type: 'boolean' as const, help: '' }, node: { type: 'string' as const, help: '' }, help: { type: 'boolean' as const, short: 'h', help: '' } };
    expect(parseArgs(['--json', 'synthetic', '--hold=20', '--node', 'n1', '-h'], specs)).to.deep.equal({ positionals: ['synthetic'], flags: { json: true, hold: 20, node: 'n1', help: true } });
    expect(parseArgs(['x', '--hold', '-5', '--', '--json'], specs).positionals).to.deep.equal(['x', '--json']);
    expect(() => parseArgs(['--hodl', '1'], specs)).to.throw(UsageError, /did you mean --hold/);
    expect(() => parseArgs(['--hold', 'abc'], specs)).to.throw(UsageError, /must be a number/);
    expect(() => parseArgs(['--node'], specs)).to.throw(UsageError, /needs a value/);
  });

  it('formats tables and compact log lines', () => {
    expect(table(['A', 'N'], [['x', 1], ['long', 100]], new Set([1]))).to.equal('A       N\nx       1\nlong  100');
    const line = JSON.stringify({ ts: 't', level: 'warn', svc: 'pool-node', node: 'n', msg: 'nats status', type: 'disconnect', data: 'a b' });
    expect(compactLog(line)).to.deep.equal({ level: 'warn', text: 'nats status type=disconnect data="a b"' });
    expect(compactLog('not json')).to.deep.equal({ level: 'info', text: 'not json' });
  });
});

describe('shoal CLI (e2e: `shoal up` and the commands as real processes)', function () {
  this.timeout(60_000);
  let up: ChildProcess | undefined;
  let upOut = '';
  let upErr = '';
  let upExit: Promise<number | null>;
  let port: number;
  let nats: string[];
  let dataDir: string;

  before(async function () {
    this.timeout(45_000);
    port = await freePort();
    nats = ['--nats', `nats://127.0.0.1:${port}`];
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-cli-e2e-'));
    const proc = spawn(process.execPath, [BIN, 'up', '--port', String(port), '--data-dir', dataDir], {
      env: { ...process.env, NO_COLOR: '1', SHOAL_HTTP_PORT: '0', SHOAL_CONFIG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    up = proc;
    proc.stdout!.on('data', (d) => { upOut += d; });
    proc.stderr!.on('data', (d) => { upErr += d; });
    upExit = new Promise((r) => proc.once('exit', (code) => r(code)));
    await until('the ready banner', async () => (upOut.includes('local cluster ready') ? true : proc.exitCode !== null ? Promise.reject(new Error(`shoal up exited ${proc.exitCode}: ${upErr}`)) : undefined), 40_000);
  });

  after(async () => {
    // Only if a test failed before the SIGINT test: never leave the tree behind.
    if (up && up.exitCode === null) {
      const kids = descendants(up.pid!);
      up.kill('SIGKILL');
      for (const pid of kids) { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('`shoal up` prints a banner with the NATS URL and next commands', () => {
    expect(upOut).to.include(`nats://127.0.0.1:${port}`);
    expect(upOut).to.include('npx shoal status');
    expect(upOut).to.match(/\[node-1\]\s+info\s+listening/);
    expect(upOut).to.match(/\[health-checker\]\s+info\s+listening/);
    expect(upOut).not.to.match(/^\{"ts"/m); // compact, not raw JSON
  });

  it('`shoal status --json` lists both nodes with their pools; the table shows them too', async () => {
    const r = await shoal(['status', '--json', ...nats]);
    expect(r.code, r.stderr).to.equal(0);
    const st = JSON.parse(r.stdout);
    expect(st.source).to.equal('balancer');
    expect(st.nodes.map((n: { nodeId: string }) => n.nodeId)).to.deep.equal(['node-1', 'node-2']);
    for (const n of st.nodes) {
      expect(n.state).to.equal('alive');
      expect(n.pid).to.be.a('number');
      expect(n.pools.synthetic).to.include.keys('total', 'idle', 'active', 'waiting', 'target', 'max');
    }
    const human = await shoal(['status', ...nats]);
    expect(human.code).to.equal(0);
    expect(human.stdout).to.match(/^strategy: /);
    expect(human.stdout).to.match(/NODE\s+STATE.*TOTAL\s+IDLE\s+ACTIVE\s+WAITING\s+TARGET\s+MAX/);
    expect(human.stdout).to.match(/node-2\s+alive/);
  });

  it('`shoal acquire synthetic --json` gets a lease through the balancer and releases it', async () => {
    const r = await shoal(['acquire', 'synthetic', '--json', '--hold', '50', ...nats]);
    expect(r.code, r.stderr).to.equal(0);
    const l = JSON.parse(r.stdout);
    expect(l.leaseId).to.be.a('string');
    expect(l.nodeId).to.be.oneOf(['node-1', 'node-2']);
    expect(l.released).to.equal(true);
    expect(l.acquireMs).to.be.a('number');
    await until('the lease to show as returned', async () => {
      const st = JSON.parse((await shoal(['status', '--json', ...nats])).stdout);
      return st.nodes.every((n: { pools: Record<string, { active: number }> }) => n.pools.synthetic!.active === 0) ? true : undefined;
    });
  });

  it('`shoal exec synthetic echo {"a":1}` prints the result; streamed events come one JSON per line', async () => {
    const r = await shoal(['exec', 'synthetic', 'echo', '{"a":1}', ...nats]);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ a: 1 });
    const s = await shoal(['exec', 'synthetic', 'stream', '{"chunks":3,"interval_ms":5}', '--json', ...nats]);
    expect(s.code, s.stderr).to.equal(0);
    const lines = s.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.event ?? null)).to.deep.equal([{ chunk: 0 }, { chunk: 1 }, { chunk: 2 }, null]);
    expect(lines.at(-1).result).to.deep.equal({ chunks: 3 });
  });

  it('an operation that fails exits 1 with one `error: CODE: message` line', async () => {
    const r = await shoal(['exec', 'synthetic', 'fail', ...nats]);
    expect(r.code).to.equal(1);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/^error: DRIVER_ERROR: /);
  });

  it('`shoal scale synthetic to 6` is spread by the autoscaler over every node and shows in status', async () => {
    // The autoscaler `shoal up` started answers once it has won its first election.
    const r = await until('an autoscaler leader', async () => {
      const x = await shoal(['scale', 'synthetic', 'to', '6', '--json', ...nats]);
      return x.code === 3 ? undefined : x;
    });
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout);
    expect(out.nodes).to.deep.equal({ 'node-1': 3, 'node-2': 3 });
    expect(out).to.include({ applied: 6, clamped: false });
    await until('target 3 in status', async () => {
      const st = JSON.parse((await shoal(['status', '--json', ...nats])).stdout);
      return st.nodes.every((n: { pools: Record<string, { target: number; total: number }> }) => n.pools.synthetic!.target === 3 && n.pools.synthetic!.total === 3) ? true : undefined;
    });
  });

  it('`shoal strategy round_robin` then status shows it', async () => {
    const r = await shoal(['strategy', 'round_robin', ...nats]);
    expect(r.code, r.stderr).to.equal(0);
    await until('round_robin in status', async () => {
      const st = JSON.parse((await shoal(['status', '--json', ...nats])).stdout);
      return st.strategy === 'round_robin' ? true : undefined;
    });
  });

  it('bad usage exits 2 with one line', async () => {
    const cases = [['frobnicate'], ['scale', 'synthetic', 'sideways', '3'], ['acquire'], ['strategy', 'fastest'], ['exec', 'synthetic', 'echo', '{nope'], ['status', '--timeout', 'soon']];
    const results = await Promise.all(cases.map((args) => shoal([...args, ...nats])));
    results.forEach((r, i) => {
      const what = cases[i]!.join(' ');
      expect(r.code, what).to.equal(2);
      expect(r.stderr.trim().split('\n'), what).to.have.length(1);
      expect(r.stderr, what).to.match(/^error: /);
    });
  });

  it('a port with nothing listening exits 3 with one line', async () => {
    const dead = await freePort();
    const r = await shoal(['status', '--nats', `nats://127.0.0.1:${dead}`], {}, 10_000);
    expect(r.code).to.equal(3);
    expect(r.stdout).to.equal('');
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/^error: UNAVAILABLE: cannot reach NATS .*npm start/);
  });

  it('`shoal up` on a busy port fails at once with one line suggesting --port', async () => {
    const r = await shoal(['up', '--port', String(port), '--data-dir', 'tmp'], { SHOAL_HTTP_PORT: '0', SHOAL_CONFIG: '' });
    expect(r.code).to.equal(1);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/port \d+ is already in use.*--port/);
  });

  it('SIGINT stops the whole tree: exit 0, no process left behind (every descendant checked)', async function () {
    this.timeout(40_000);
    const st = JSON.parse((await shoal(['status', '--json', ...nats])).stdout);
    const pids = new Set<number>([...st.nodes.map((n: { pid: number }) => n.pid), ...descendants(up!.pid!)]);
    expect(pids.size).to.be.at.least(4); // nats-server, balancer, two nodes
    for (const pid of pids) expect(alive(pid), `pid ${pid} before`).to.equal(true);
    up!.kill('SIGINT');
    let t: NodeJS.Timeout | undefined;
    const code = await Promise.race([upExit, new Promise((r) => { t = setTimeout(() => r('hung'), 35_000); })]);
    clearTimeout(t);
    expect(code, upErr).to.equal(0);
    // Gone, or on its way (a zombie waiting for PID 1, which in a container may never reap it).
    const end = Date.now() + 2000;
    while (Date.now() < end && [...pids].some(running)) await new Promise((r) => setTimeout(r, 100));
    for (const pid of pids) expect(running(pid), `pid ${pid} after: ${psLine(pid)}`).to.equal(false);
    expect(upOut).to.include('stopped');
  });
});

/**
 * Alive and not a zombie: a process orphaned by a SIGKILLed `shoal up` is
 * reaped by PID 1, which may take its time (or, in a container, never come).
 */
const running = (pid: number): boolean => {
  if (!alive(pid)) return false;
  try {
    return !execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim().startsWith('Z');
  } catch {
    return false;
  }
};

/** A `shoal up` as a real process, its output collected. */
interface Up {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  /** `--json` lines of `shoal up` itself (`"proc":"shoal-up"`). */
  events: () => Record<string, unknown>[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startUp(args: string[]): Up {
  const proc = spawn(process.execPath, [BIN, 'up', ...args], {
    env: { ...process.env, NO_COLOR: '1', SHOAL_HTTP_PORT: '0', SHOAL_CONFIG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { err += d; });
  const events = () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } }).filter((e) => e.proc === 'shoal-up');
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  return { proc, out: () => out, err: () => err, events, exit };
}

async function exitWithin(up: Up, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'hung'> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([up.exit, new Promise<'hung'>((res) => { t = setTimeout(() => res('hung'), ms); })]);
  clearTimeout(t);
  return r;
}

describe('shoal CLI (e2e: `shoal up` stopped the hard way)', function () {
  this.timeout(60_000);
  const ups: Up[] = [];
  const pids = new Set<number>();
  const dirs: string[] = [];

  afterEach(() => {
    // Whatever a failed test left: never leave a tree behind.
    for (const u of ups.splice(0)) if (u.proc.exitCode === null && u.proc.signalCode === null) { for (const p of descendants(u.proc.pid!)) pids.add(p); u.proc.kill('SIGKILL'); }
    for (const pid of pids) { try { process.kill(-pid, 'SIGKILL'); } catch { /* not a group */ } try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    pids.clear();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('SIGKILL of `shoal up`: its services stop by themselves; the next `shoal up` stops the nats-server left behind', async function () {
    this.timeout(50_000);
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'shoal-cli-kill-'));
    dirs.push(dataDir);
    const first = startUp(['--port', String(port), '--data-dir', dataDir, '--json']);
    ups.push(first);
    const ready = await until('the first ready event', async () => {
      if (first.proc.exitCode !== null) throw new Error(`shoal up exited ${first.proc.exitCode}: ${first.err()}`);
      return first.events().find((e) => e.event === 'ready');
    }, 40_000);
    const services = (ready.children as { name: string; pid: number }[]).map((c) => c.pid);
    const natsPid = ready.natsPid as number;
    const tree = descendants(first.proc.pid!);
    for (const p of [...tree, natsPid]) pids.add(p);
    // Optional services (the autoscaler, the health-checker) are children too: every one must stop.
    expect((ready.children as { name: string }[]).map((c) => c.name)).to.have.members(['balancer-1', 'node-1', 'node-2', 'autoscaler', 'health-checker']);
    for (const pid of [...services, natsPid]) expect(tree, `pid ${pid} under shoal up`).to.include(pid);

    first.proc.kill('SIGKILL');
    await first.exit;
    // The lifeline (stdin) ends: every service drains and exits on its own.
    await until('the balancer, the nodes and the autoscaler to exit', async () => (services.every((p) => !running(p)) ? true : undefined), 10_000);
    for (const pid of tree.filter((p) => p !== natsPid)) expect(running(pid), `pid ${pid}`).to.equal(false);
    // nats-server cannot watch a pipe: it is still there...
    expect(running(natsPid)).to.equal(true);

    // ...until the next `shoal up` with the same data dir stops it, and starts on the same port.
    const second = startUp(['--port', String(port), '--data-dir', dataDir, '--json']);
    ups.push(second);
    await until('the second ready event', async () => {
      if (second.proc.exitCode !== null) throw new Error(`second shoal up exited ${second.proc.exitCode}: ${second.err()}`);
      return second.events().find((e) => e.event === 'ready');
    }, 40_000);
    expect(second.events().find((e) => e.event === 'stale-nats')).to.include({ pid: natsPid, port, upPid: first.proc.pid });
    expect(running(natsPid)).to.equal(false);
    const tree2 = descendants(second.proc.pid!);
    for (const p of tree2) pids.add(p);
    second.proc.kill('SIGINT');
    const r = await exitWithin(second, 30_000);
    expect(r, second.err()).to.deep.equal({ code: 0, signal: null });
    for (const pid of tree2) expect(running(pid), `pid ${pid} after`).to.equal(false);
  });

  for (const when of ['0.5 s after start', '0.3 s after the services were spawned'] as const) {
    it(`SIGINT during start (${when}) stops everything and exits 0`, async function () {
      this.timeout(40_000);
      const port = await freePort();
      const up = startUp(['--port', String(port), '--data-dir', 'tmp']);
      ups.push(up);
      // Not before its first line: until then `shoal up` is still loading, has
      // no handler for SIGINT yet (and has started nothing).
      const spoke = () => until('`shoal up` to start', async () => (/shoal: starting nats-server/.test(up.out()) ? true : up.proc.exitCode !== null ? Promise.reject(new Error(up.err())) : undefined), 20_000);
      if (when === '0.5 s after start') await Promise.all([sleep(500), spoke()]);
      else {
        await until('the services to be spawned', async () => (/starting balancer-1/.test(up.out()) ? true : up.proc.exitCode !== null ? Promise.reject(new Error(up.err())) : undefined), 20_000);
        await sleep(300);
      }
      expect(up.out(), 'still starting').not.to.include('local cluster ready');
      const tree = descendants(up.proc.pid!);
      for (const p of tree) pids.add(p);
      up.proc.kill('SIGINT');
      const r = await exitWithin(up, 30_000);
      expect(r, up.err()).to.deep.equal({ code: 0, signal: null });
      expect(up.err()).not.to.match(/error:/);
      for (const pid of tree) expect(running(pid), `pid ${pid} after`).to.equal(false);
    });
  }
});
