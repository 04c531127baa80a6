/**
 * deploy/prometheus and deploy/grafana against the real tools: promtool
 * checks and unit-tests the alert rules; Debian's Prometheus scrapes a
 * `shoal up` cluster under a little load, loads the rules without errors, and
 * every expression of every dashboard panel returns data.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { connect, type Client } from '@shoal/client';
import { eventually as until, ROOT, sleep } from '../helpers/procs.js';
import { freePort } from '../helpers/nats-server.js';
import { onJsonLines } from '../helpers/json-lines.js';

const run = promisify(execFile);
const RULES_DIR = join(ROOT, 'deploy', 'prometheus', 'rules');
/** The scrape job of each `shoal up` child, by its name's kind (node-1 → shoal-pool-node). */
const JOBS: Record<string, string> = { node: 'shoal-pool-node', balancer: 'shoal-balancer', autoscaler: 'shoal-autoscaler', 'health-checker': 'shoal-health-checker' };


describe('Prometheus rules and the Grafana dashboard', function () {
  this.timeout(240_000);

  it('promtool: the rules check, and each alert fires and stays quiet as its unit tests say', async () => {
    const check = await run('promtool', ['check', 'rules', join(RULES_DIR, 'shoal.rules.yml')]);
    expect(check.stdout).to.match(/SUCCESS: 9 rules found/);
    const tests = await run('promtool', ['test', 'rules', 'shoal.rules.test.yml'], { cwd: RULES_DIR });
    expect(tests.stdout).to.match(/SUCCESS/);
    // Every alert of the rules file has a firing case and a quiet case in the tests.
    const alerts = [...readFileSync(join(RULES_DIR, 'shoal.rules.yml'), 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
    const testsText = readFileSync(join(RULES_DIR, 'shoal.rules.test.yml'), 'utf8');
    for (const a of alerts) {
      const cases = testsText.split('alert_rule_test:').slice(1).filter((c) => c.includes(`alertname: ${a}\n`));
      expect(cases.some((c) => /exp_alerts: \[\]/.test(c)), `${a}: a quiet case`).to.equal(true);
      expect(cases.some((c) => /exp_alerts:\n\s+- exp_labels/.test(c)), `${a}: a firing case`).to.equal(true);
    }
    // The compose scrape config is valid for the Prometheus it ships with.
    const dir = mkdtempSync(join(tmpdir(), 'shoal-prom-check-'));
    try {
      const cfg = readFileSync(join(ROOT, 'deploy', 'prometheus', 'prometheus.compose.yml'), 'utf8').replace('/etc/prometheus/rules/', `${RULES_DIR}/`);
      writeFileSync(join(dir, 'p.yml'), cfg);
      expect((await run('promtool', ['check', 'config', join(dir, 'p.yml')])).stdout).to.match(/SUCCESS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('a real Prometheus scraping a shoal up cluster', () => {
    let dir: string;
    let up: ChildProcess | undefined;
    let prom: ChildProcess | undefined;
    let client: Client | undefined;
    let promUrl: string;
    const targets: { job: string; port: number }[] = [];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'shoal-prom-'));
      const natsPort = await freePort();
      // A synthetic pool and a Claude pool of the stand-in CLI (its turns report tokens and cost).
      writeFileSync(join(dir, 'config.yaml'), [
        'pools:',
        '  synthetic: { driver: synthetic, min_size: 2, max_size: 10, options: { create_latency: 1ms, exec_latency: 1ms } }',
        `  claude: { driver: claude-cli, min_size: 1, max_size: 2, options: { command: ${join(ROOT, 'test/stand-ins/claude/claude.mjs')} } }`,
      ].join('\n'));
      up = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), 'up', '--json', '--port', String(natsPort), '--http-port', '0', '--nodes', '2', '--data-dir', 'tmp', '--creds-dir', join(dir, 'creds'), '--config', join(dir, 'config.yaml')],
        { cwd: dir, env: { ...process.env, NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
      const ready = new Promise<void>((resolve, reject) => {
        onJsonLines(up!.stdout!, (ev) => {
          if (ev.event !== 'ready') return;
          // Every child of the cluster with its HTTP port: nodes, balancers and the optional services.
          for (const c of ev.children as { name: string; httpPort: number | null }[]) {
            const kind = c.name.replace(/-\d+$/, '');
            if (JOBS[kind] && typeof c.httpPort === 'number') targets.push({ job: JOBS[kind]!, port: c.httpPort });
          }
          resolve();
        });
        let stderr = '';
        up!.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
        up!.once('exit', (code) => reject(new Error(`shoal up exited ${code}: ${stderr.slice(-2000)}`)));
      });
      await ready;
      expect(targets.filter((t) => t.job === 'shoal-pool-node')).to.have.length(2);
      expect(targets.map((t) => t.job)).to.include.members(['shoal-balancer', 'shoal-autoscaler', 'shoal-health-checker']);

      const promPort = await freePort();
      promUrl = `http://127.0.0.1:${promPort}`;
      const jobs = [...new Set(targets.map((t) => t.job))];
      writeFileSync(join(dir, 'prometheus.yml'), [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: [${join(RULES_DIR, 'shoal.rules.yml')}]`,
        'scrape_configs:',
        ...jobs.map((job) => `  - { job_name: ${job}, static_configs: [ { targets: [${targets.filter((t) => t.job === job).map((t) => `'127.0.0.1:${t.port}'`).join(', ')}] } ] }`),
      ].join('\n'));
      prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
      await until('prometheus ready', async () => (await fetch(`${promUrl}/-/ready`)).ok, 60_000);

      // Roles on, as `shoal up` runs: this test is a client.
      client = await connect({ servers: [`nats://127.0.0.1:${natsPort}`], name: 'prom-test', nats: { nkeySeedFile: join(dir, 'creds', 'client.nk') } });
    });

    after(async () => {
      await client?.close().catch(() => {});
      prom?.kill('SIGTERM');
      if (up && up.exitCode === null) {
        up.kill('SIGINT');
        await new Promise((r) => up!.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    });

    const query = async (expr: string) => {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = await res.json() as { status: string; error?: string; data: { result: unknown[] } };
      if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
      return body.data.result;
    };

    it('scrapes every process, loads the rules, and every dashboard panel expression returns data', async () => {
      const c = client!;
      // Load: acquires, execs and one Claude turn, spread over several scrapes.
      const t0 = Date.now();
      while (Date.now() - t0 < 6000) {
        await Promise.all(Array.from({ length: 8 }, async () => { const l = await c.acquire('synthetic'); await l.exec('echo', {}); await l.release(); }));
        await sleep(100);
      }
      const turn = await c.exec('claude', 'send', { content: 'hello' }, { timeoutMs: 60_000 });
      expect(turn).to.not.equal(undefined);
      await until('every target up', async () => {
        const r = await query('up') as { value: [number, string] }[];
        return r.length === targets.length && r.every((s) => s.value[1] === '1');
      }, 30_000);
      const rules = await (await fetch(`${promUrl}/api/v1/rules`)).json() as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
      const loaded = rules.data.groups.flatMap((g) => g.rules);
      expect(loaded).to.have.length(9);
      await until('rules evaluated', async () => {
        const r = await (await fetch(`${promUrl}/api/v1/rules`)).json() as typeof rules;
        return r.data.groups.flatMap((g) => g.rules).every((x) => x.health === 'ok');
      }, 30_000);

      const dash = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'shoal.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
      const empty: string[] = [];
      await until('every panel has data', async () => {
        empty.length = 0;
        for (const p of dash.panels) {
          for (const t of p.targets) {
            const expr = t.expr.replaceAll('$pool', '.*');
            if ((await query(expr)).length === 0) empty.push(`${p.title}: ${expr}`);
          }
        }
        return empty.length === 0;
      }, 60_000).catch((err: Error) => { throw new Error(`${err.message}; no data for:\n${empty.join('\n')}`); });
    });
  });
});
