import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/procs.js';

/**
 * docs/cli.md "Installing the CLI on its own": `npm install -g <clone>` puts a
 * working `shoal` on the PATH, usable from any directory. Installed under a
 * temporary prefix here, never the machine's global one.
 */
describe('the shoal CLI installed on its own (npm install -g from the clone)', function () {
  this.timeout(120_000);
  let prefix: string;
  let elsewhere: string;

  before(() => {
    prefix = mkdtempSync(join(tmpdir(), 'shoal-global-'));
    elsewhere = mkdtempSync(join(tmpdir(), 'shoal-cwd-'));
    execFileSync('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', ROOT], { stdio: 'pipe', timeout: 100_000 });
  });

  after(() => {
    for (const d of [prefix, elsewhere]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('runs from another directory: help, and exit 3 with one line when no cluster answers', () => {
    const bin = join(prefix, 'bin', 'shoal');
    const help = spawnSync(bin, ['--help'], { cwd: elsewhere, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(help.status, help.stderr).to.equal(0);
    expect(help.stdout).to.match(/usage: shoal <command>/);
    expect(help.stdout).to.match(/undrain/);
    const st = spawnSync(bin, ['status', '--nats', 'nats://127.0.0.1:1'], { cwd: elsewhere, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(st.status).to.equal(3);
    expect(st.stderr.trim().split('\n')).to.have.length(1);
  });
});
