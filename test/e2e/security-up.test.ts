import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@shoal/client';
import { ROLES } from '@shoal/protocol';
import { call, connectNats } from '@shoal/runtime';
import { freePort } from '../helpers/nats-server.js';
import { ROOT, sleep, runShoal as shoal } from '../helpers/procs.js';

const BIN = join(ROOT, 'bin/shoal.js');




/** `shoal up` in the background until its banner; `stop()` sends SIGINT and waits. */
async function startUp(args: string[]): Promise<{ proc: ChildProcess; out: () => string; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [BIN, 'up', '--data-dir', 'tmp', '--http-port', '-1', ...args], {
    env: { ...process.env, NO_COLOR: '1', SHOAL_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { out += d; });
  const exited = new Promise((r) => proc.once('exit', r));
  const end = Date.now() + 40_000;
  while (!out.includes('local cluster ready')) {
    if (proc.exitCode !== null || Date.now() > end) { proc.kill('SIGKILL'); throw new Error(`shoal up did not start: ${out}`); }
    await sleep(100);
  }
  return { proc, out: () => out, async stop() { if (proc.exitCode === null) proc.kill('SIGINT'); await exited; } };
}

describe('security: `shoal up` runs NATS with roles on by default (e2e)', function () {
  this.timeout(90_000);
  let credsDir: string;

  before(() => { credsDir = mkdtempSync(join(tmpdir(), 'shoal-up-creds-')); });
  after(() => rmSync(credsDir, { recursive: true, force: true }));

  it('makes one key per role (0600), refuses a connection without one, and the CLI and SDK work with theirs', async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const up = await startUp(['--port', String(port), '--creds-dir', credsDir]);
    try {
      expect(up.out()).to.include('Roles are on');
      for (const role of ROLES) {
        const f = join(credsDir, `${role}.nk`);
        expect(existsSync(f), f).to.equal(true);
        expect(statSync(f).mode & 0o777, f).to.equal(0o600);
      }
      const anon = await connectNats({ servers: [url], waitOnFirstConnect: false }).then(async (nc) => { await nc.close(); return 'connected'; }, (e: Error) => e.message);
      expect(anon).to.match(/authori[sz]ation/i);
      // The CLI with the admin key from SHOAL_CREDS_DIR; without a key it says why.
      const ok = await shoal(['status', '--json', '--nats', url], { SHOAL_CREDS_DIR: credsDir });
      expect(ok.code, ok.stderr).to.equal(0);
      expect(JSON.parse(ok.stdout).nodes).to.have.length(2);
      const refused = await shoal(['status', '--nats', url], { SHOAL_CREDS_DIR: join(credsDir, 'none') });
      expect(refused.code).to.equal(3);
      expect(refused.stderr).to.match(/authorization violation.*SHOAL_CREDS_DIR/);
      // An application with the client key: served, and refused on admin subjects.
      const nc = await connectNats({ servers: [url], nkeySeedFile: join(credsDir, 'client.nk'), waitOnFirstConnect: false });
      const client = await connect({ nc });
      expect(await client.exec('synthetic', 'echo', 'as client', { timeoutMs: 5000 })).to.equal('as client');
      const steer = await call(nc, 'shoal.admin.strategy', { strategy: 'round_robin' }, 1000).then(() => 'allowed', () => 'refused');
      expect(steer).to.equal('refused');
      await client.close();
      await nc.close();
    } finally {
      await up.stop();
    }
  });

  it('--no-auth is the open development mode: no key needed', async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const up = await startUp(['--port', String(port), '--creds-dir', credsDir, '--no-auth']);
    try {
      expect(up.out()).to.include('Roles are OFF');
      const r = await shoal(['status', '--json', '--nats', url], { SHOAL_CREDS_DIR: join(credsDir, 'none') });
      expect(r.code, r.stderr).to.equal(0);
    } finally {
      await up.stop();
    }
  });
});
