import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client } from '@shoal/client';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, startPoolNode, type Service } from '../helpers/procs.js';

/**
 * An account-wide cap on Claude turns running at once: three pool-node
 * processes on one real nats-server (JetStream KV `shoal_turns`), each with
 * sessions of the same credential (`account.key`), cap 2. Turns of three
 * clients are sent to all nodes at once; the stand-ins log each turn's start
 * and end, and the log must never show more than 2 running, while every turn
 * completes (waiting turns are queued, not failed).
 */
const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');

/** Most turns running at once, from the stand-ins' "start|end pid ms" lines (ends before starts at equal times). */
export function maxConcurrent(log: string): { max: number; starts: number; ends: number } {
  const ev = log.trim().split('\n').filter(Boolean).map((l) => { const [what, , at] = l.split(' '); return { d: what === 'start' ? 1 : -1, at: Number(at) }; });
  ev.sort((a, b) => a.at - b.at || a.d - b.d);
  let n = 0;
  let max = 0;
  for (const e of ev) { n += e.d; max = Math.max(max, n); }
  return { max, starts: ev.filter((e) => e.d > 0).length, ends: ev.filter((e) => e.d < 0).length };
}

describe('claude-cli account-wide cap on concurrent turns (3 pool-nodes, JetStream KV, stand-in CLI)', function () {
  this.timeout(90_000);
  let nats: NatsServer;
  let dir: string;
  const nodes: (Service & { nodeId: string })[] = [];
  const clients: Client[] = [];
  let log: string;

  before(async function () {
    this.timeout(60_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-claude-acct-'));
    log = join(dir, 'turns.log');
    writeFileSync(log, '');
    nats = await startNatsServer();
    for (let i = 0; i < 3; i++) {
      const cfg = join(dir, `node${i}.yaml`);
      writeFileSync(cfg, JSON.stringify({
        node: { heartbeat_interval: '200ms', drain_grace: '1s' },
        pools: {
          claude: {
            driver: 'claude-cli', min_size: 3, max_size: 3, initial_size: 3,
            resource_limits: { max_memory_per_session: '1GB', max_total_memory: '8GB' },
            create: { timeout: '15s' },
            options: {
              command: STAND_IN, cwd_root: join(dir, `work${i}`), stop_grace: '300ms', stop_kill_after: '700ms',
              account: { key: 'team-a', max_concurrent_turns: 2, start_stagger: '20ms' },
              env: { STANDIN_TURN_LOG: log },
            },
          },
        },
      }));
      nodes.push(await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg }));
    }
    for (const name of ['alpha', 'beta', 'gamma']) clients.push(await connect({ servers: [nats.url], name }));
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(nodes.map((n) => n.kill()));
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('3 nodes, cap 2: never more than 2 turns at once (counted at the stand-ins), and all turns complete', async () => {
    const calls: Promise<unknown>[] = [];
    // 3 clients × 3 nodes × 2 turns = 18 turns of ~400 ms, on 9 sessions: unbounded, 9 would run at once.
    for (const c of clients) {
      for (const n of nodes) {
        for (let k = 0; k < 2; k++) calls.push(Promise.resolve(c.exec('claude', 'send', { content: `work ${k} [[turn_ms=400]]` }, { nodeId: n.nodeId, timeoutMs: 60_000 })));
      }
    }
    const results = await Promise.all(calls) as { subtype: string; is_error: boolean; result?: string }[];
    expect(results.every((r) => r.subtype === 'success' && !r.is_error)).to.equal(true);
    // Each answer is its own turn's (the stand-in echoes the prompt), not another line taken for it.
    const strays = results.filter((r) => !/work [01] /.test(String(r.result)));
    expect(strays, JSON.stringify(strays).slice(0, 2000)).to.deep.equal([]);
    // ...and each turn's answer went to one caller only.
    const answers = results.map((r) => `${String((r as { session_id?: string }).session_id)} ${String(r.result)}`);
    expect(new Set(answers).size, answers.join('\n')).to.equal(18);
    const seen = maxConcurrent(readFileSync(log, 'utf8'));
    expect(seen.starts).to.equal(18);
    expect(seen.ends).to.equal(18);
    expect(seen.max).to.equal(2);
  });
});
