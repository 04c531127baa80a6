import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { writeConfig } from '../helpers/cluster.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { orHung, ROOT, sleep } from '../helpers/procs.js';

/**
 * The lifeline `shoal up` gives its children (@shoal/runtime onShutdown):
 * with SHOAL_LIFELINE=1, the end of stdin is a SIGTERM. A pool-node as its
 * own process, its stdin a pipe from the test.
 */
describe('lifeline: stdin ends → graceful stop (pool-node as its own process)', function () {
  this.timeout(20_000);
  let nats: NatsServer;
  const procs: ChildProcess[] = [];

  before(async () => { nats = await startNatsServer(); });
  after(async () => { await nats?.stop(); });
  afterEach(() => { for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });

  /** A pool-node with stdin as a pipe; resolves once it is listening. */
  async function node(lifeline: boolean): Promise<{ proc: ChildProcess; logs: () => string; exit: Promise<{ code: number | null; signal: string | null }> }> {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp',
      SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 2, initial_size: 1 }), SHOAL_HTTP_PORT: '-1', SHOAL_DRAIN_GRACE: '2s',
    };
    if (lifeline) env.SHOAL_LIFELINE = '1';
    const proc = spawn(process.execPath, [join(ROOT, 'services/pool-node/dist/main.js')], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    procs.push(proc);
    let out = '';
    proc.stdout!.on('data', (d) => { out += d; });
    proc.stderr!.on('data', (d) => { out += d; });
    const exit = new Promise<{ code: number | null; signal: string | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    const deadline = Date.now() + 10_000;
    while (!out.includes('"msg":"listening"')) {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`pool-node did not start: ${out}`);
      await sleep(25);
    }
    return { proc, logs: () => out, exit };
  }

  it('drains and exits 0 when stdin ends, as on SIGTERM', async () => {
    const n = await node(true);
    n.proc.stdin!.end();
    const r = await orHung(n.exit, 8000);
    expect(r, n.logs()).to.deep.equal({ code: 0, signal: null });
    const lines = n.logs().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === 'shutting down')).to.include({ signal: 'SIGTERM' });
    expect(lines.some((l) => l.msg === 'drained')).to.equal(true);
  });

  it('still exits 0 when nobody reads its output any more (the parent is gone: EPIPE while draining)', async () => {
    const n = await node(true);
    n.proc.stdout!.destroy();
    n.proc.stderr!.destroy();
    n.proc.stdin!.destroy();
    const r = await orHung(n.exit, 8000);
    expect(r).to.deep.equal({ code: 0, signal: null });
  });

  it('without SHOAL_LIFELINE, the end of stdin changes nothing', async () => {
    const n = await node(false);
    n.proc.stdin!.end();
    await sleep(600);
    expect(n.proc.exitCode).to.equal(null);
    n.proc.kill('SIGTERM');
    expect(await n.exit).to.deep.equal({ code: 0, signal: null });
  });
});
