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

interface Outcome { lease?: Lease; err?: ShoalError; releaseErr?: ShoalError; startedAt: number; ms: number; timeoutMs: number }
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

  /**
   * `concurrency` loops of acquire → hold a moment → release, until `until(out)`
   * says stop (or a minute has gone: then the counts asserted will say what was
   * missing). Outcomes are pushed to `o.into` as they come, so that a test can
   * wait for progress. A failed release is recorded, except for a lease on one
   * of `o.deadNodes` (killed on purpose).
   */
  async function load(concurrency: number, until: (out: Outcome[]) => boolean, o: { timeoutMs?: number; holdMs?: number; into?: Outcome[]; deadNodes?: Set<string> } = {}): Promise<Outcome[]> {
    const out: Outcome[] = o.into ?? [];
    const giveUpAt = Date.now() + 60_000;
    await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; !until(out) && Date.now() < giveUpAt; i++) {
        const r = await acquire({ timeoutMs: o.timeoutMs, priority: (w + i) % 3 - 1, ttlMs: 3000 });
        out.push(r);
        if (r.lease) {
          await sleep(Math.random() * (o.holdMs ?? 5));
          try { await release(r.lease); } catch (err) { if (!o.deadNodes?.has(r.lease.nodeId)) r.releaseErr = err as ShoalError; }
        }
      }
    }));
    return out;
  }
  const releaseErrors = (out: Outcome[]) => out.filter((x) => x.releaseErr).map((x) => x.releaseErr!.message);
  /** Poll until `cond()` holds; fail after `ms` (a generous "it did not hang"). */
  async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
      await sleep(20);
    }
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
    const [outcomes, execs] = await Promise.all([
      // Long enough that a node slowed for a moment on a loaded machine (retried elsewhere, its circuit open for a
      // second) still shows its share over the run.
      load(8, (out) => out.length >= 320),
      // One-shot execs mixed in: echo and a stream, answered by the node straight to us.
      (async () => {
        const got: Awaited<ReturnType<typeof execCall>>[] = [];
        for (let i = 0; i < 20; i++) got.push(await execCall(i % 2 ? 'echo' : 'stream', i % 2 ? { i } : { chunks: 3 }));
        return got;
      })(),
    ]);
    const failed = outcomes.filter((o) => o.err);
    expect(failed.map((o) => o.err!.message)).to.deep.equal([]);
    expect(releaseErrors(outcomes)).to.deep.equal([]);
    expect(outcomes.length).to.be.at.least(320);
    const byNode = count(outcomes.map((o) => o.lease!.nodeId));
    expect(Object.keys(byNode).sort()).to.deep.equal(['n1', 'n2', 'n3']);
    for (const n of Object.values(byNode)) expect(n).to.be.greaterThan(outcomes.length * 0.1);
    execs.forEach((e, i) => {
      expect(e.err?.message, `exec ${i}`).to.equal(undefined);
      if (i % 2) expect(e.result, `echo ${i}`).to.deep.equal({ i });
      else expect([e.events, e.result], `stream ${i}`).to.deep.equal([3, { chunks: 3 }]);
    });
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
    // (the server notices the dead connection a moment after the kill: generous on a loaded machine)
    const NOTICE_MS = 1000;
    let killedAt = Infinity;
    const into: Outcome[] = [];
    const late = (out: Outcome[]) => out.filter((o) => o.startedAt > killedAt + NOTICE_MS);
    const [outcomes] = await Promise.all([
      load(8, (out) => late(out).length >= 40, { timeoutMs: 1500, into }),
      (async () => {
        await until('load under way', () => into.length >= 40);
        killedAt = Date.now();
        balancers.get('b1')!.proc.kill('SIGKILL');
      })(),
    ]);
    const failed = outcomes.filter((o) => o.err);
    // At most the requests in flight at b1 when it died.
    expect(failed.length).to.be.at.most(8);
    for (const o of failed) {
      expect(TYPED.has(o.err!.code), o.err!.message).to.equal(true);
      // Answered by its deadline (with slack for a loaded machine), not left hanging.
      expect(o.ms).to.be.at.most(o.timeoutMs + SLACK_MS + 1000);
      expect(o.startedAt).to.be.lessThan(killedAt + NOTICE_MS);
    }
    // Everything sent after the kill was noticed was served by b2.
    expect(late(outcomes).length).to.be.at.least(40);
    expect(late(outcomes).filter((o) => o.err).map((o) => o.err!.message)).to.deep.equal([]);
    // Releases go straight to the nodes, which all live: none may fail.
    expect(releaseErrors(outcomes)).to.deep.equal([]);
    await balancers.get('b1')!.exited;
    await startBalancer('b1');
  });

  it('SIGTERM of one balancer mid-load loses nothing: it leaves the queue group, finishes its requests and exits 0', async () => {
    const b2 = balancers.get('b2')!;
    const into: Outcome[] = [];
    let exitedAt = Infinity;
    const [outcomes, code] = await Promise.all([
      load(8, (out) => out.filter((o) => o.startedAt > exitedAt).length >= 20, { timeoutMs: 1500, into }),
      (async () => {
        await until('load under way', () => into.length >= 30);
        const c = await b2.kill('SIGTERM');
        exitedAt = Date.now();
        return c;
      })(),
    ]);
    expect(code).to.equal(0);
    expect(outcomes.filter((o) => o.err).map((o) => o.err!.message)).to.deep.equal([]);
    expect(releaseErrors(outcomes)).to.deep.equal([]);
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
    const waiting = acquire({ timeoutMs: 6000 });
    await until('the acquire to wait in n3\'s queue', async () => (await admin<{ pools: Record<string, { waiting: number }> }>(s.nodeStatus('n3'), {})).pools[POOL]!.waiting === 1);
    await admin(s.adminWeight, { nodeId: 'n1', weight: 1 });
    await admin(s.adminWeight, { nodeId: 'n2', weight: 1 });
    await eventually(async () => {
      for (const id of ['b1', 'b2']) expect((await status(id)).nodes.filter((n) => n.weight === 0).length).to.equal(0);
    }, 5000);

    const killedAt = Date.now();
    n3.proc.kill('SIGKILL');
    // Suspect after 3 silent beats (600 ms); 2 s leaves room for a loaded machine.
    const WINDOW_MS = 2000;
    const afterWindow = (out: Outcome[]) => out.filter((o) => o.startedAt > killedAt + WINDOW_MS);
    const [retried, outcomes] = await Promise.all([waiting, load(6, (out) => afterWindow(out).length >= 20, { timeoutMs: 1500, deadNodes: new Set(['n3']) })]);
    // Queued at n3 when it died: placed again on a live node once n3 turned suspect (within its own deadline).
    expect(retried.err?.message).to.equal(undefined);
    expect(retried.lease!.nodeId).to.be.oneOf(['n1', 'n2']);
    // Nothing lost: no responders from n3 are retried on the others at once.
    expect(outcomes.filter((o) => o.err).map((o) => o.err!.message)).to.deep.equal([]);
    expect(releaseErrors(outcomes)).to.deep.equal([]);
    expect(afterWindow(outcomes).length).to.be.at.least(20);
    expect(afterWindow(outcomes).map((o) => o.lease!.nodeId)).to.not.include('n3');
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
