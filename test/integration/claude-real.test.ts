import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client } from '@shoal/client';
import { systemClock, type Driver } from '@shoal/pool-node';
import { claudeCliDriver, type ClaudeSession, type CliMessage } from '../../services/pool-node/src/drivers/claude-cli/index.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, startService, type Service } from '../helpers/procs.js';
import { prerequisite } from '../helpers/prerequisite.js';

/**
 * The REAL Claude Code CLI (the dev dependency @anthropic-ai/claude-code) as
 * the pool's command, one session: it starts and answers `initialize`
 * (~6 s cold), the lease carries its session id, a turn streams the CLI's own
 * lines (without the API: system/init then api_retry) and is interrupted,
 * `/clear` gives a new session id, and a drain leaves no process behind.
 * Not run (loudly) when the CLI is not installed; under CI=true that fails.
 */
const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}
const running = (pid: number) => {
  try { return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z'; } catch { return false; }
};

describe('claude-cli pool with the real Claude Code CLI (no API reachable)', function () {
  this.timeout(60_000);
  if (!prerequisite('the real Claude Code CLI (node_modules/.bin/claude)', existsSync(CLAUDE), 'npm install')) return;
  let nats: NatsServer;
  let client: Client;
  let dir: string;
  let node: Service | undefined;

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'shoal-claude-real-'));
    nats = await startNatsServer();
    client = await connect({ servers: [nats.url], name: 'claude-real-it' });
  });
  after(async () => {
    await node?.kill('SIGKILL');
    await client?.close();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  });

  it('starts, streams and interrupts a real turn, clears to a new session id, and drains to zero processes', async () => {
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      pools: {
        claude: {
          driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1,
          resource_limits: { max_memory_per_session: '2GB', max_total_memory: '4GB' },
          create: { timeout: '45s' },
          options: { command: CLAUDE, cwd_root: join(dir, 'work'), interrupt_timeout: '10s' },
        },
      },
    }));
    node = startService('services/pool-node/dist/main.js', {
      SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info',
      HOME: join(dir, 'home'), ANTHROPIC_API_KEY: 'sk-ant-dummy-key-for-tests',
    });
    const { nodeId } = await node.waitFor((l) => l.msg === 'listening', 50_000) as { nodeId: string };
    const kids = childrenOf(node.proc.pid!);
    expect(kids).to.have.length(1);

    const lease = await client.acquire('claude', { nodeId: String(nodeId), timeoutMs: 10_000 });
    const sid = lease.info.meta?.session_id as string;
    expect(sid).to.match(UUID);

    const call = lease.exec('send', { content: 'hello' }, { timeoutMs: 30_000 });
    const events: { type: string; subtype?: string; [k: string]: unknown }[] = [];
    let interrupted: Promise<unknown> | undefined;
    for await (const e of call) {
      const ev = e as (typeof events)[number];
      events.push(ev);
      if (process.env.DEBUG_REAL) console.log(Date.now(), JSON.stringify(ev).slice(0, 200));
      // Without the API the CLI retries; interrupt as soon as it says so.
      if (!interrupted && ev.type === 'system' && ev.subtype === 'api_retry') interrupted = Promise.resolve(lease.exec('interrupt')); // an ExecCall is sent on first use
    }
    expect(await interrupted).to.deep.equal({ interrupted: true });
    const result = await call.result as Record<string, unknown>;
    expect(result).to.include({ type: 'result', subtype: 'error_during_execution', is_error: true, session_id: sid });
    expect(events[0]).to.include({ type: 'system', subtype: 'init', session_id: sid, claude_code_version: '2.1.197' });
    expect(events.some((e) => e.type === 'user' && JSON.stringify(e).includes('[Request interrupted by user]'))).to.equal(true);

    await lease.release({ reset: true });
    const again = await client.acquire('claude', { nodeId: String(nodeId), timeoutMs: 20_000 });
    expect(again.reused).to.equal(true);
    expect(again.info.meta?.session_id).to.match(UUID).and.not.equal(sid);
    await again.release();

    expect(await node.kill('SIGTERM')).to.equal(0);
    expect(kids.filter(running)).to.deep.equal([]);
  });

  it('private config: the real CLI\'s transcript is gone after reset and its lazy flush cannot bring it back', async () => {
    const d = claudeCliDriver({
      clock: systemClock, random: Math.random, poolName: 'real',
      options: { command: CLAUDE, cwd_root: join(dir, 'private'), interrupt_timeout: '10s', env: { ANTHROPIC_API_KEY: 'sk-ant-dummy-key-for-tests' } },
    }) as Driver<ClaudeSession>;
    const s = await d.create({ resourceId: 'p1', signal: AbortSignal.timeout(45_000) });
    try {
      const sid = s.sessionId!;
      const ac = new AbortController();
      const turn = d.exec(s, 'send', { content: 'remember 4711' }, { emit: (e) => { if ((e as CliMessage).subtype === 'api_retry') void d.exec(s, 'interrupt', {}, { emit() {}, signal: ac.signal }); }, signal: ac.signal });
      expect(await turn).to.include({ type: 'result', session_id: sid });
      const [folder] = readdirSync(join(dir, 'private'));
      const projects = join(dir, 'private', folder!, 'home', '.claude', 'projects');
      const transcript = () => {
        try { return readdirSync(projects).some((p) => existsSync(join(projects, p, `${sid}.jsonl`)) && statSync(join(projects, p, `${sid}.jsonl`)).isFile()); } catch { return false; }
      };
      // The CLI writes it lazily, about a second after the turn.
      for (let i = 0; i < 100 && !transcript(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(transcript(), 'the CLI wrote its transcript').to.equal(true);
      await d.reset(s);
      expect(s.sessionId).to.not.equal(sid);
      expect(transcript()).to.equal(false);
      // Past the CLI's flush delay: still gone.
      await new Promise((r) => setTimeout(r, 3000));
      expect(transcript()).to.equal(false);
      expect(await d.validate(s)).to.equal(true);
    } finally {
      await d.destroy(s);
    }
  });
});
