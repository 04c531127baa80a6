import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createInbox, type NatsConnection } from 'nats';
import { encode, parseHealthVerdict, PROTOCOL_VERSION, readReply, subjects, type HealthVerdict, type ProbeReply } from '@shoal/protocol';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { orHung, ROOT, sleep, startService, type Service } from '../helpers/procs.js';

const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');
const s = subjects('shoal');

/**
 * The real Claude Code CLI with no credentials (no API key, an empty private
 * config): `claude auth status` says loggedIn false, so the pool is down from
 * its first create (its turns would end `is_error: true`, "Not logged in").
 * The node's health probe reports the pool's backend down with that reason,
 * and a health-checker process marks the pool (not the node) in its verdict.
 */
describe('health: a Claude pool whose CLI is not logged in (real CLI, no credentials)', function () {
  this.timeout(90_000);
  let nats: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  const procs: Service[] = [];
  const verdicts: HealthVerdict[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-health-claude-'));
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    nc.subscribe(s.anyHealthVerdict, { callback: (_e, m) => { try { verdicts.push(parseHealthVerdict(m.data)); } catch { /* ignore */ } } });
  });
  after(async () => {
    // SIGTERM: the node drains, which ends its CLI processes (a SIGKILLed node would leave them behind).
    for (const p of procs) if (await orHung(p.kill('SIGTERM'), 15_000) === 'hung') await p.kill('SIGKILL');
    await nc?.close();
    await nats?.stop();
    try { if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }); } catch { /* a temp dir; the OS cleans it */ }
  });

  it('a CLI that is not logged in marks the pool\'s backend down before any turn, with the CLI\'s words; the checker marks the pool, not the node', async () => {
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      health_check: { interval: '300ms', timeout: '2s', failure_threshold: 2, recovery_threshold: 2, checks: [{ type: 'ping' }] },
      pools: {
        claude: {
          driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1,
          resource_limits: { max_memory_per_session: '2GB', max_total_memory: '4GB' },
          create: { timeout: '45s' },
          options: { command: CLAUDE, cwd_root: join(dir, 'work') },
        },
      },
    }));
    const env = { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info', HOME: join(dir, 'home') };
    const node = startService('services/pool-node/dist/main.js', { ...env, SHOAL_NODE_ID: 'claude-node' });
    procs.push(node);
    await node.waitFor((l) => l.msg === 'listening', 60_000);
    const probe = async () => readReply<ProbeReply>((await nc.request(s.nodeProbe('claude-node'), encode({ v: PROTOCOL_VERSION }), { timeout: 10_000 })).data);
    // The create's auth check (`claude auth status`: loggedIn false, the fail-fast contract) finds it before
    // any turn: the probe says so at once, in the CLI's words and with the fix.
    let down = await probe();
    for (const stop = Date.now() + 20_000; down.pools.claude!.healthy && Date.now() < stop; down = await probe()) await sleep(100);
    expect(down.pools.claude!.healthy).to.equal(false);
    expect(down.pools.claude!.reason).to.match(/not logged in/i).and.to.contain('ANTHROPIC_API_KEY');

    // A one-shot turn is refused at once, with the same reason (no CLI process spends a turn on it).
    const req = encode({ v: PROTOCOL_VERSION, pool: 'claude', op: 'send', args: { content: 'hello' }, timeoutMs: 30_000 });
    const sub = nc.subscribe(createInbox());
    nc.publish(s.nodeExec('claude-node'), req, { reply: sub.getSubject() });
    const until = Date.now() + 40_000;
    let text = '';
    for await (const m of sub) {
      text += new TextDecoder().decode(m.data);
      if (/not logged in/i.test(text) || Date.now() > until) break;
    }
    sub.unsubscribe();
    expect(text).to.match(/not logged in/i).and.to.contain('POOL_UNAVAILABLE');

    // A checker turns it into the pool's verdict; the node itself stays healthy.
    const checker = startService('services/health-checker/dist/main.js', { ...env, SHOAL_HTTP_PORT: '0', SHOAL_HEALTH_CHECKER_ID: 'hc-claude' });
    procs.push(checker);
    const t = Date.now() + 20_000;
    let v: HealthVerdict | undefined;
    while (!(v = verdicts.find((x) => x.nodeId === 'claude-node' && x.pools.claude?.healthy === false))) {
      if (Date.now() > t) throw new Error(`no verdict marking the pool: ${JSON.stringify(verdicts.slice(-2))}`);
      await sleep(50);
    }
    expect(v.healthy).to.equal(true);
    expect(v.pools.claude!.reason).to.match(/not logged in/i);
  });
});
