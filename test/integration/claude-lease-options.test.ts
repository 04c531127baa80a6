import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadRequestError, connect, type Client } from '@shoal/client';
import { parkKeyHash, parseHeartbeat, subjects } from '@shoal/protocol';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Per-lease options through the SDK and a balancer (pool-node process,
 * stand-in CLI): model and permission mode by the CLI's control requests,
 * system prompt, tools and working directory by respawn, all within the
 * pool's `lease_options` allow-list; anything else is BAD_REQUEST before a
 * session is taken; the next holder gets the pool's defaults back.
 */
const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');
const BALANCER = 'services/balancer/dist/main.js';
const s = subjects('shoal');

interface WhoAmI { model: string; permissionMode: string; cwd: string; append: string | null; allowed: string[] }
const text = (r: unknown) => String((r as { result?: string }).result);
const whoami = (r: unknown): WhoAmI => {
  const m = /\[whoami (\{.*?\})\]/.exec(String((r as { result?: string }).result));
  if (!m) throw new Error(`no whoami in ${JSON.stringify(r)}`);
  return JSON.parse(m[1]!);
};

describe('claude-cli per-lease options (SDK, balancer, pool-node, stand-in CLI)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let dir: string;
  let node: Service & { nodeId: string; httpPort: number | null };
  let balancer: Service;
  let client: Client;
  let projA: string;

  before(async function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-claude-opts-'));
    projA = join(dir, 'project-a');
    mkdirSync(projA);
    nats = await startNatsServer();
    const cfg = join(dir, 'node.yaml');
    writeFileSync(cfg, JSON.stringify({
      node: { heartbeat_interval: '200ms', drain_grace: '1s' },
      pools: {
        claude: {
          driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1,
          session_management: { validate_skip_window: 0 },
          resource_limits: { max_memory_per_session: '1GB', max_total_memory: '8GB' },
          create: { timeout: '10s', retry_base: '100ms', retry_max: '1s' },
          options: {
            command: STAND_IN, cwd_root: join(dir, 'work'), model: 'sonnet', allowed_tools: ['Read', 'Grep', 'Glob'], interrupt_timeout: '1s', stop_grace: '300ms', stop_kill_after: '700ms',
            lease_options: { model: ['sonnet', 'haiku'], permission_mode: ['default', 'plan'], append_system_prompt: true, allowed_tools: ['Read', 'Grep'], cwd: [projA] },
          },
        },
        bare: {
          driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1,
          // Parking off: a release with park is an ordinary one.
          session_management: { max_parked: 0 },
          resource_limits: { max_memory_per_session: '1GB', max_total_memory: '8GB' },
          options: { command: STAND_IN, cwd_root: join(dir, 'work2'), stop_grace: '300ms', stop_kill_after: '700ms' },
        },
      },
    }));
    node = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: cfg });
    balancer = startService(BALANCER, { SHOAL_NATS_URL: nats.url, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'info' });
    await balancer.waitFor((l) => l.msg === 'listening');
    client = await connect({ servers: [nats.url], name: 'claude-opts' });
    for (let i = 0; i < 100; i++) {
      const ok = await client.acquire('claude', { timeoutMs: 2000 }).then(async (l) => { await l.release(); return true; }, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    await client?.close();
    await balancer?.kill();
    await node?.kill();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('a per-lease model and permission mode reach the CLI by control request (same process); the next holder gets the defaults', async () => {
    const plain = await client.acquire('claude');
    const pid = ((await plain.exec('info')) as { pid: number }).pid;
    expect(whoami(await plain.exec('send', { content: '[[whoami]]' }))).to.include({ model: 'sonnet', permissionMode: 'default' });
    await plain.release();

    const lease = await client.acquire('claude', { options: { model: 'haiku', permission_mode: 'plan' } });
    expect(lease.meta?.model).to.equal('haiku');
    expect(whoami(await lease.exec('send', { content: '[[whoami]]' }))).to.include({ model: 'haiku', permissionMode: 'plan' });
    expect(((await lease.exec('info')) as { pid: number }).pid).to.equal(pid);
    await lease.release();

    const next = await client.acquire('claude');
    expect(whoami(await next.exec('send', { content: '[[whoami]]' }))).to.include({ model: 'sonnet', permissionMode: 'default' });
    await next.release();
  });

  it('system prompt, tools and working directory per lease by respawn; one-shot too', async () => {
    const lease = await client.acquire('claude', { options: { append_system_prompt: 'Answer in French.', allowed_tools: ['Read'], cwd: projA, model: 'haiku' } });
    const w = whoami(await lease.exec('send', { content: '[[whoami]]' }));
    expect(w).to.deep.include({ append: 'Answer in French.', allowed: ['Read'], cwd: projA, model: 'haiku' });
    await lease.release();
    const back = await client.acquire('claude');
    const d = whoami(await back.exec('send', { content: '[[whoami]]' }));
    expect(d).to.deep.include({ append: null, allowed: ['Read', 'Grep', 'Glob'], model: 'sonnet' });
    expect(d.cwd).to.not.equal(projA);
    await back.release();
    const one = await client.exec('claude', 'send', { content: '[[whoami]]' }, { options: { model: 'haiku' } });
    expect(whoami(one).model).to.equal('haiku');
  });

  it('outside the allow-list: BAD_REQUEST before any session is taken', async () => {
    const cases: Record<string, unknown>[] = [
      { model: 'opus' }, { permission_mode: 'bypassPermissions' }, { allowed_tools: ['Read', 'Bash'] }, { cwd: '/etc' }, { max_turns: 100 }, { model: 42 },
    ];
    for (const options of cases) {
      const err = await client.acquire('claude', { options, timeoutMs: 3000 }).then(() => undefined, (e: unknown) => e);
      expect(err, JSON.stringify(options)).to.be.instanceOf(BadRequestError);
    }
    const oneShot = await client.exec('claude', 'send', { content: 'x' }, { options: { model: 'opus' }, timeoutMs: 3000 }).then(() => undefined, (e: unknown) => e);
    expect(oneShot).to.be.instanceOf(BadRequestError);
    // A pool with no lease_options takes none.
    const bare = await client.acquire('bare', { options: { model: 'haiku' }, timeoutMs: 3000 }).then(() => undefined, (e: unknown) => e) as BadRequestError;
    expect(bare).to.be.instanceOf(BadRequestError);
    expect(bare.message).to.contain('model "haiku" is not allowed');
    // Nothing was taken: the one session is free at once.
    const lease = await client.acquire('claude', { timeoutMs: 2000 });
    await lease.release();
  });

  /**
   * Until a node's heartbeat lists the key as parked in the pool (or, with `listed` false, one no longer
   * does). Read from the heartbeats themselves: balancer statuses show only how many are parked.
   */
  async function parkedSeen(pool: string, key: string, listed = true): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { sub.unsubscribe(); reject(new Error(`key ${key} never showed as ${listed ? 'parked' : 'not parked'}`)); }, 10_000);
      const sub = client.nc.subscribe(s.anyHeartbeat, { callback: (_e, m) => {
        if ((parseHeartbeat(m.data).pools[pool]?.parkedHashes?.includes(parkKeyHash(key)) === true) === listed) { clearTimeout(t); sub.unsubscribe(); resolve(); }
      } });
    });
  }

  it('a parked session: options outside the allow-list are refused and it stays parked; allowed ones apply on a hit (acquire and one-shot)', async () => {
    const first = await client.acquire('claude');
    await first.exec('send', { content: 'remember me' });
    await first.release({ park: 'opt-1' });
    await parkedSeen('claude', 'opt-1');
    const bad = await client.acquire('claude', { park: 'opt-1', options: { model: 'opus' }, timeoutMs: 3000 }).then(() => undefined, (e: unknown) => e);
    expect(bad).to.be.instanceOf(BadRequestError);
    const hit = await client.acquire('claude', { park: 'opt-1', options: { model: 'haiku' } });
    expect(hit.parked).to.equal('hit');
    expect(hit.meta?.model).to.equal('haiku');
    expect(whoami(await hit.exec('send', { content: '[[whoami]]' })).model).to.equal('haiku');
    // Held, the key leaves the heartbeat: once it is back, it is the new parking, not the old one's heartbeat.
    await parkedSeen('claude', 'opt-1', false);
    await hit.release({ park: 'opt-1' });
    await parkedSeen('claude', 'opt-1');
    // One-shot on the parked session: the parked one kept haiku, the call asks for sonnet and plan.
    const one = await client.exec('claude', 'send', { content: '[[whoami]]' }, { park: 'opt-1', options: { model: 'sonnet', permission_mode: 'plan' } });
    expect(whoami(one)).to.include({ model: 'sonnet', permissionMode: 'plan' });
    expect(String((one as { result?: string }).result)).to.contain('first: "remember me"');
    const end = await client.acquire('claude', { park: 'opt-1' });
    await end.release();
  });

  it('a hit whose options respawn the CLI (system prompt, tools) resumes the conversation: hit means the context is there; moving it to another cwd says gone', async () => {
    const first = await client.acquire('claude');
    expect(text(await first.exec('send', { content: 'the code is 7' }))).to.contain('message 1 of this conversation');
    const pid = ((await first.exec('info')) as { pid: number }).pid;
    const sid = first.meta?.session_id;
    await first.release({ park: 'opt-respawn' });
    // Right after the release, with options that exist only as flags: a new process, the same conversation.
    const hit = await client.acquire('claude', { park: 'opt-respawn', options: { append_system_prompt: 'Be brief.', allowed_tools: ['Read'] } });
    expect(hit.parked).to.equal('hit');
    expect(((await hit.exec('info')) as { pid: number }).pid).to.not.equal(pid);
    expect(hit.meta?.session_id).to.equal(sid);
    const r = await hit.exec('send', { content: '[[whoami]] what was the code?' });
    expect(text(r)).to.contain('message 2 of this conversation; first: "the code is 7"');
    expect(whoami(r)).to.deep.include({ append: 'Be brief.', allowed: ['Read'] });
    await hit.release({ park: 'opt-respawn' });
    // The CLI finds a conversation under its working directory only: a lease that moves it elsewhere loses it, and says so.
    const moved = await client.acquire('claude', { park: 'opt-respawn', options: { cwd: projA } });
    expect(moved.parked).to.equal('gone');
    expect(text(await moved.exec('send', { content: 'and now?' }))).to.contain('message 1 of this conversation; first: "and now?"');
    await moved.release();
  });

  it('max_parked 0: a release with park is an ordinary release and records nothing for a resume', async () => {
    const kv = await client.nc.jetstream().views.kv('shoal_parked');
    const off = await client.acquire('bare');
    await off.release({ park: 'never' });
    // A key parked on a pool that parks, released after: once its record is there, the other would be too.
    const on = await client.acquire('claude');
    await on.exec('send', { content: 'x' });
    await on.release({ park: 'marker' });
    // Recorded by the key's hash: the key itself (a bearer credential) is not in the bucket.
    const marker = `claude.${parkKeyHash('marker')}`;
    for (let i = 0; i < 200 && !(await kv.get(marker)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await kv.get(marker)).to.not.equal(null);
    expect(await kv.get('claude.marker')).to.equal(null);
    expect(await kv.get(`bare.${parkKeyHash('never')}`)).to.equal(null);
    const back = await client.acquire('bare', { park: 'never' });
    expect(back.parked).to.equal('gone');
    await back.release();
    const end = await client.acquire('claude', { park: 'marker' });
    await end.release();
  });

  it('shoal status shows tokens and USD by client name (turns of two clients, summed from the nodes)', async () => {
    const other = await connect({ servers: [nats.url], name: 'billing-api' });
    try {
      await other.exec('claude', 'send', { content: 'bill me please' });
      await other.exec('claude', 'send', { content: 'and again' });
    } finally {
      await other.close();
    }
    const run = (args: string[]) => new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [join(ROOT, 'bin', 'shoal.js'), ...args], { env: { ...process.env, NO_COLOR: '1', SHOAL_NATS_URL: nats.url }, timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)));
    });
    const json = JSON.parse(await run(['status', '--json'])) as { claudeCosts: { pool: string; client: string; turns: number; outputTokens: number; costUsd: number }[] };
    const billing = json.claudeCosts.find((c) => c.pool === 'claude' && c.client === 'billing-api');
    expect(billing).to.include({ turns: 2 });
    expect(billing!.outputTokens).to.be.greaterThan(0);
    expect(billing!.costUsd).to.be.greaterThan(0);
    expect(json.claudeCosts.some((c) => c.client === 'claude-opts')).to.equal(true);
    const text = await run(['status']);
    expect(text).to.contain('claude cost by client');
    expect(text).to.match(/claude\s+billing-api\s+2\s+/);
  });
});
