import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { decode, encode, ErrorCodes, PROTOCOL_VERSION, readReply, ShoalError, subjects, type Lease } from '@shoal/protocol';
import { transportError } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT, sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';

/**
 * Two balancer processes and three pool-node processes on a real nats-server,
 * driven with raw `nats` requests (no SDK), as a service in any language would.
 * Nodes beat every 200 ms, so a silent node is suspect after 600 ms.
 */
const s = subjects('shoal');
const POOL = 'synthetic';
/** What a caller waits beyond its own timeoutMs before calling the request lost. */
const SLACK_MS = 250;
const TYPED = new Set<string>(Object.values(ErrorCodes));

interface Outcome { lease?: Lease; err?: ShoalError; startedAt: number; ms: number; timeoutMs: number }
interface Status { balancerId: string; strategy: string; performanceWeights: Record<string, number>; nodes: { nodeId: string; state: string; weight: number | null; circuit: string; pools: Record<string, unknown> }[] }

describe('balancer (integration: 2 balancer and 3 pool-node processes)', function () {
  this.timeout(30_000);
  let nats: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  let balancerConfig: string;
  const nodes: (Service & { nodeId: string })[] = [];
  const balancers = new Map<string, Service>();

  async function startBalancer(id: string): Promise<Service> {
    const b = startService('services/balancer/dist/main.js', {
      SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: balancerConfig, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info', SHOAL_BALANCER_ID: id,
    });
    balancers.set(id, b);
    await b.waitFor((l) => l.msg === 'listening');
    return b;
  }

  async function startNode(id: string) {
    const n = await startPoolNode({
      SHOAL_NATS_URL: nats.url, SHOAL_NODE_ID: id, SHOAL_HEARTBEAT_INTERVAL: '200ms', SHOAL_DRAIN_GRACE: '1s',
      SHOAL_POOL_SYNTHETIC_MIN_SIZE: '2', SHOAL_POOL_SYNTHETIC_INITIAL_SIZE: '2', SHOAL_POOL_SYNTHETIC_MAX_SIZE: '6',
    });
    nodes.push(n);
    return n;
  }

  async function acquire(o: { timeoutMs?: number; priority?: number; ttlMs?: number; pool?: string } = {}): Promise<Outcome> {
    const timeoutMs = o.timeoutMs ?? 2000;
    const pool = o.pool ?? POOL;
    const startedAt = Date.now();
    const subject = s.poolAcquire(pool);
    const body = encode({ v: PROTOCOL_VERSION, pool, timeoutMs, priority: o.priority, ttlMs: o.ttlMs ?? 5000, holder: { client: 'balancer-it' } });
    try {
      const m = await nc.request(subject, body, { timeout: timeoutMs + SLACK_MS });
      return { lease: readReply<Lease>(m.data), startedAt, ms: Date.now() - startedAt, timeoutMs };
    } catch (err) {
      return { err: transportError(err, subject), startedAt, ms: Date.now() - startedAt, timeoutMs };
    }
  }

  async function release(lease: Lease): Promise<void> {
    readReply(( await nc.request(s.leaseRelease(lease.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: lease.leaseId, secret: lease.secret }), { timeout: 2000 })).data);
  }

  /** `concurrency` loops of acquire → hold a moment → release, until `until()` says stop. */
  async function load(concurrency: number, until: () => boolean, o: { timeoutMs?: number; holdMs?: number } = {}): Promise<Outcome[]> {
    const out: Outcome[] = [];
    await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; !until(); i++) {
        const r = await acquire({ timeoutMs: o.timeoutMs, priority: (w + i) % 3 - 1, ttlMs: 3000 });
        out.push(r);
        if (r.lease) {
          await sleep(Math.random() * (o.holdMs ?? 5));
          await release(r.lease).catch(() => {}); // its node may have been killed meanwhile
        }
      }
    }));
    return out;
  }

  async function admin<T>(subject: string, body: Record<string, unknown>): Promise<T> {
    return readReply<T>((await nc.request(subject, encode({ v: PROTOCOL_VERSION, ...body }), { timeout: 3000 })).data);
  }

  const status = (id: string) => admin<Status>(s.adminStatusOf(id), {});

  /** Poll until `check` passes or the time is up (then fail with its last error). */
  async function eventually(check: () => Promise<void>, ms = 3000): Promise<void> {
    const until = Date.now() + ms;
    for (;;) {
      try { return await check(); } catch (err) { if (Date.now() > until) throw err; }
      await sleep(50);
    }
  }

  before(async function () {
    this.timeout(60_000);
    nats = await startNatsServer();
    nc = await natsConnect({ servers: nats.url });
    dir = mkdtempSync(join(tmpdir(), 'shoal-balancer-it-'));
    balancerConfig = join(dir, 'balancer.yaml');
    writeFileSync(balancerConfig, 'balancer:\n  circuit_failure_threshold: 3\n  circuit_cooldown: 1s\n');
    await Promise.all(['n1', 'n2', 'n3'].map(startNode));
    await Promise.all(['b1', 'b2'].map(startBalancer));
  });

  after(async () => {
    await Promise.all([...balancers.values(), ...nodes].map((p) => p.kill('SIGKILL')));
    await nc?.close();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves every acquire of a mixed load, spread over all nodes by both balancers', async () => {
    const until = Date.now() + 1500;
    const [outcomes, execs] = await Promise.all([
      load(8, () => Date.now() > until),
      // One-shot execs mixed in: echo and a stream, answered by the node straight to us.
      (async () => {
        const got: unknown[] = [];
        for (let i = 0; i < 20; i++) got.push(await execCall(i % 2 ? 'echo' : 'stream', i % 2 ? { i } : { chunks: 3 }));
        return got;
      })(),
    ]);
    const failed = outcomes.filter((o) => o.err);
    expect(failed.map((o) => o.err!.message)).to.deep.equal([]);
    expect(outcomes.length).to.be.greaterThan(100);
    const byNode = count(outcomes.map((o) => o.lease!.nodeId));
    expect(Object.keys(byNode).sort()).to.deep.equal(['n1', 'n2', 'n3']);
    for (const n of Object.values(byNode)) expect(n).to.be.greaterThan(outcomes.length * 0.1);
    expect(execs.filter((e, i) => (i % 2 ? (e as { result: unknown }).result !== null : (e as { events: number }).events === 3)).length).to.equal(20);
    // Both replicas placed some of them.
    for (const b of balancers.values()) {
      const port = (await b.waitFor((l) => l.msg === 'listening')).httpPort;
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const placed = [...metrics.matchAll(/^shoal_balancer_placements_total\{[^}]*result="success"[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
      expect(placed).to.be.greaterThan(10);
      expect(metrics).to.contain('shoal_balancer_placement_latency_ms_bucket{');
      expect(metrics).to.match(/shoal_balancer_nodes\{[^}]*state="alive"[^}]*\} 3/);
    }
  });

  /** The `shoal` command as a user runs it, against this cluster. */
  function shoalCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), ...args, '--nats', nats.url], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => { stdout += d; });
      p.stderr.on('data', (d) => { stderr += d; });
      p.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** One-shot exec through the balancers: collect the events and the final result. */
  async function execCall(op: string, args: unknown, timeoutMs = 2000): Promise<{ events: number; result?: unknown; err?: ShoalError }> {
    const inbox = `_INBOX.it.${Math.random().toString(36).slice(2)}`;
    const sub = nc.subscribe(inbox, { timeout: timeoutMs + SLACK_MS });
    nc.publish(s.poolExec(POOL), encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs, op, args }), { reply: inbox });
    let events = 0;
    try {
      for await (const m of sub) {
        const d = decode(m.data);
        if (d.ok === false) return { events, err: ShoalError.fromWire(d.error as never) };
        if (d.done === true) return { events, result: d.result };
        events += Array.isArray(d.events) ? d.events.length : 1;
      }
    } catch (err) {
      return { events, err: transportError(err, inbox) };
    } finally {
      sub.unsubscribe();
    }
    return { events };
  }

  it('answers bad input with typed errors and keeps serving', async () => {
    const acq = s.poolAcquire(POOL);
    const codeOf = async (subject: string, data: Uint8Array) => {
      try { readReply((await nc.request(subject, data, { timeout: 2000 })).data); return 'OK'; } catch (err) { return (err as ShoalError).code; }
    };
    // Several times each, so that both replicas of the queue group see them.
    for (let i = 0; i < 4; i++) {
      expect(await codeOf(acq, new Uint8Array([0xc1, 0x00, 0xff]))).to.equal('BAD_REQUEST');
      expect(await codeOf(acq, encode([1, 2, 3]))).to.equal('BAD_REQUEST');
      expect(await codeOf(acq, encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs: 'soon' }))).to.equal('BAD_REQUEST');
      expect(await codeOf(acq, encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs: -5 }))).to.equal('BAD_REQUEST');
      expect(await codeOf(acq, encode({ v: PROTOCOL_VERSION, pool: 'other', timeoutMs: 100 }))).to.equal('BAD_REQUEST');
      expect(await codeOf(acq, encode({ pool: POOL, timeoutMs: 100 }))).to.equal('BAD_REQUEST');
      expect(await codeOf(acq, encode({ v: 99, pool: POOL, timeoutMs: 100 }))).to.equal('VERSION_MISMATCH');
      expect(await codeOf(s.poolAcquire('nope'), encode({ v: PROTOCOL_VERSION, pool: 'nope', timeoutMs: 100 }))).to.equal('POOL_NOT_FOUND');
      expect(await codeOf(s.poolExec(POOL), encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs: 100, op: 42 }))).to.equal('BAD_REQUEST');
      expect(await codeOf(s.adminStrategy, encode({ v: PROTOCOL_VERSION, strategy: 'fastest' }))).to.equal('BAD_REQUEST');
      expect(await codeOf(s.adminWeight, encode({ v: PROTOCOL_VERSION, nodeId: 'a.b*', weight: 1 }))).to.equal('BAD_REQUEST');
      expect(await codeOf(s.adminWeight, encode({ v: PROTOCOL_VERSION, nodeId: 'n1', weight: -1 }))).to.equal('BAD_REQUEST');
    }
    const err = (await acquire({ pool: 'nope', timeoutMs: 100 })).err!;
    expect(err.message).to.contain('no known node has pool nope');
    // Still serving, and both replicas are alive.
    for (let i = 0; i < 6; i++) {
      const r = await acquire();
      expect(r.err?.message).to.equal(undefined);
      await release(r.lease!);
    }
    for (const [id, b] of balancers) {
      expect(b.proc.exitCode).to.equal(null);
      expect((await status(id)).balancerId).to.equal(id);
    }
  });

  it('applies a strategy and a weight set with the shoal CLI on both replicas, and keeps them across a restart of both', async () => {
    const set = await shoalCli(['strategy', 'performance_based', '--latency', '1', '--throughput', '0', '--error-rate', '0', '--resource', '0', '--json']);
    expect(set.code, set.stderr).to.equal(0);
    expect(JSON.parse(set.stdout).strategy).to.equal('performance_based');
    const w = await shoalCli(['weight', 'n2', '0']);
    expect(w.code, w.stderr).to.equal(0);
    const check = async () => {
      for (const id of ['b1', 'b2']) {
        const st = await status(id);
        expect(st.strategy, id).to.equal('performance_based');
        expect(st.performanceWeights.latency).to.equal(1);
        expect(st.nodes.find((n) => n.nodeId === 'n2')?.weight, id).to.equal(0);
      }
    };
    await eventually(check, 2000);
    // Weight 0 takes n2 out of rotation on both replicas.
    const placed: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await acquire();
      expect(r.err?.message).to.equal(undefined);
      placed.push(r.lease!.nodeId);
      await release(r.lease!);
    }
    expect(placed).to.not.include('n2');

    // Restart both balancers; the settings come back from the KV bucket before they serve.
    await Promise.all(['b1', 'b2'].map((id) => balancers.get(id)!.kill('SIGTERM')));
    expect(balancers.get('b1')!.proc.exitCode).to.equal(0);
    await Promise.all(['b1', 'b2'].map(startBalancer));
    await check();

    await admin(s.adminStrategy, { strategy: 'p2c' });
    await admin(s.adminWeight, { nodeId: 'n2', weight: 1 });
    await eventually(async () => {
      for (const id of ['b1', 'b2']) expect((await status(id)).strategy).to.equal('p2c');
    }, 2000);
  });

  it('SIGKILL of one balancer mid-load fails only its in-flight requests, each typed and within its deadline', async () => {
    const start = Date.now();
    let killedAt = Infinity;
    const [outcomes] = await Promise.all([
      load(8, () => Date.now() > start + 2500, { timeoutMs: 1500 }),
      (async () => {
        await sleep(700);
        killedAt = Date.now();
        balancers.get('b1')!.proc.kill('SIGKILL');
      })(),
    ]);
    const failed = outcomes.filter((o) => o.err);
    expect(outcomes.length - failed.length).to.be.greaterThan(100);
    // At most the requests in flight at b1 when it died.
    expect(failed.length).to.be.at.most(8);
    for (const o of failed) {
      expect(TYPED.has(o.err!.code), o.err!.message).to.equal(true);
      expect(o.ms).to.be.at.most(o.timeoutMs + SLACK_MS + 100);
      // (the server notices the dead connection a moment after the kill)
      expect(o.startedAt).to.be.lessThan(killedAt + 50);
    }
    // Everything sent after the kill was served by b2.
    const late = outcomes.filter((o) => o.startedAt > killedAt + 50);
    expect(late.length).to.be.greaterThan(20);
    expect(late.filter((o) => o.err).map((o) => o.err!.message)).to.deep.equal([]);
    await balancers.get('b1')!.exited;
    await startBalancer('b1');
  });

  it('SIGTERM of one balancer mid-load loses nothing: it leaves the queue group, finishes its requests and exits 0', async () => {
    const start = Date.now();
    const b2 = balancers.get('b2')!;
    const [outcomes, code] = await Promise.all([
      load(8, () => Date.now() > start + 1500, { timeoutMs: 1500 }),
      (async () => { await sleep(500); return b2.kill('SIGTERM'); })(),
    ]);
    expect(code).to.equal(0);
    expect(outcomes.length).to.be.greaterThan(50);
    expect(outcomes.filter((o) => o.err).map((o) => o.err!.message)).to.deep.equal([]);
    await startBalancer('b2');
  });

  it('SIGKILL of one node: in-flight acquires are retried elsewhere, and no placements go there after the suspect window', async () => {
    const n3 = nodes.find((n) => n.nodeId === 'n3')!;
    // Make n3 the only placeable node and fill it, so that the next acquire waits in n3's queue.
    await admin(s.adminWeight, { nodeId: 'n1', weight: 0 });
    await admin(s.adminWeight, { nodeId: 'n2', weight: 0 });
    await eventually(async () => {
      for (const id of ['b1', 'b2']) expect((await status(id)).nodes.filter((n) => n.weight === 0).length).to.equal(2);
    }, 2000);
    const held: Lease[] = [];
    for (let i = 0; i < 6; i++) held.push((await acquire({ ttlMs: 10_000 })).lease!);
    expect(held.map((l) => l.nodeId)).to.deep.equal(Array(6).fill('n3'));
    const waiting = acquire({ timeoutMs: 4000 });
    await sleep(200);
    await admin(s.adminWeight, { nodeId: 'n1', weight: 1 });
    await admin(s.adminWeight, { nodeId: 'n2', weight: 1 });
    await sleep(100);

    const killedAt = Date.now();
    n3.proc.kill('SIGKILL');
    const [retried, outcomes] = await Promise.all([waiting, load(6, () => Date.now() > killedAt + 2000, { timeoutMs: 1500 })]);
    // Queued at n3 when it died: placed again on a live node once n3 turned suspect.
    expect(retried.err?.message).to.equal(undefined);
    expect(retried.lease!.nodeId).to.be.oneOf(['n1', 'n2']);
    expect(retried.ms).to.be.lessThan(3000);
    // Nothing lost: no responders from n3 are retried on the others at once.
    expect(outcomes.filter((o) => o.err).map((o) => o.err!.message)).to.deep.equal([]);
    const afterWindow = outcomes.filter((o) => o.startedAt > killedAt + 1000);
    expect(afterWindow.length).to.be.greaterThan(20);
    expect(afterWindow.map((o) => o.lease!.nodeId)).to.not.include('n3');
    for (const id of ['b1', 'b2']) {
      const st = await status(id);
      const n = st.nodes.find((x) => x.nodeId === 'n3');
      // Suspect after 3 silent beats, swept after 5.
      expect(n === undefined || n.state !== 'alive', id).to.equal(true);
    }
  });
});

function count(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}
