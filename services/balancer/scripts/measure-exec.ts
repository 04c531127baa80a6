/**
 * One-shot exec through the balancer: `forward` (the node answers the caller
 * directly) against `relay` (the balancer copies every message), and the bare
 * node as the floor. Real processes on loopback: nats-server, one pool-node,
 * one balancer per mode. Prints one JSON line per case; numbers in
 * docs/balancer.md. Run: npx tsc -b services/balancer services/pool-node &&
 * npx tsx services/balancer/scripts/measure-exec.ts [--quick]
 */
import { readFileSync } from 'node:fs';
import { connect, type NatsConnection } from 'nats';
import { decode, encode, PROTOCOL_VERSION } from '@shoal/protocol';
import { startNatsServer } from '../../../test/helpers/nats-server.js';
import { startPoolNode, startService, type Service } from '../../../test/helpers/procs.js';

const quick = process.argv.includes('--quick');

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime in clock ticks (100/s)
}

/** One exec: publish with our reply subject, resolve at the final message; returns messages received. */
function execOnce(nc: NatsConnection, subject: string, body: Uint8Array, inbox: string, waiters: Map<string, (n: number) => void>, id: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const key = `${inbox}.${id}`;
    const t = setTimeout(() => { waiters.delete(key); reject(new Error('timeout')); }, 10_000);
    waiters.set(key, (n) => { clearTimeout(t); resolve(n); });
    nc.publish(subject, body, { reply: key });
  });
}

async function run(nc: NatsConnection, subject: string, op: string, args: unknown, total: number, concurrency: number, pid?: number) {
  const inbox = `_INBOX.m${Math.random().toString(36).slice(2)}`;
  const waiters = new Map<string, (n: number) => void>();
  const counts = new Map<string, number>();
  const sub = nc.subscribe(`${inbox}.*`, {
    callback: (_e, m) => {
      const n = (counts.get(m.subject) ?? 0) + 1;
      const d = decode(m.data);
      if (d.ok === false || d.done === true) { counts.delete(m.subject); waiters.get(m.subject)?.(n); waiters.delete(m.subject); } else counts.set(m.subject, n);
    },
  });
  await nc.flush();
  const body = encode({ v: PROTOCOL_VERSION, pool: 'synthetic', timeoutMs: 5000, op, args });
  const lat: number[] = [];
  let next = 0;
  let msgs = 0;
  const cpu0 = pid ? cpuMs(pid) : 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const id = next++;
      const s = performance.now();
      const n = await execOnce(nc, subject, body, inbox, waiters, id);
      msgs += n;
      lat.push(performance.now() - s);
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  sub.unsubscribe();
  lat.sort((a, b) => a - b);
  return {
    execsPerSec: Math.round(total / secs), msgsPerSec: Math.round(msgs / secs),
    p50: +lat[Math.floor(lat.length * 0.5)]!.toFixed(2), p99: +lat[Math.floor(lat.length * 0.99)]!.toFixed(2),
    balancerCpuMsPer1k: pid ? Math.round(((cpuMs(pid) - cpu0) / total) * 1000) : null,
  };
}

const nats = await startNatsServer({ jetstream: true });
const env = { SHOAL_NATS_URL: nats.url, SHOAL_LOG_LEVEL: 'warn', SHOAL_HTTP_PORT: '-1' };
const procs: Service[] = [];
try {
  const node = await startPoolNode({ ...env, SHOAL_LOG_LEVEL: 'info', SHOAL_NODE_ID: 'm1', SHOAL_POOL_SYNTHETIC_MIN_SIZE: '32', SHOAL_POOL_SYNTHETIC_MAX_SIZE: '32', SHOAL_POOL_SYNTHETIC_INITIAL_SIZE: '32', SHOAL_POOL_SYNTHETIC_SESSION_MANAGEMENT_VALIDATE_ON_RETURN: 'false' });
  procs.push(node);
  const nc = await connect({ servers: nats.url });
  const cases = [
    { name: 'echo', op: 'echo', args: { x: 1 }, total: quick ? 1000 : 4000 },
    { name: 'stream50', op: 'stream', args: { chunks: 50 }, total: quick ? 200 : 800 },
  ];
  const bare = (c: (typeof cases)[number], total: number) => run(nc, 'shoal.node.m1.exec', c.op, c.args, total, 16);
  // Warm the node first, then interleave the modes over rounds: whichever runs
  // first on a cold node otherwise looks 30-50% slower.
  for (const c of cases) await bare(c, c.total);
  const results: Record<string, Record<string, number>>[] = [];
  const rounds = quick ? 1 : 3;
  for (let round = 0; round < rounds; round++) {
    for (const mode of ['forward', 'relay', 'bare-node'] as const) {
      let b: Service | undefined;
      if (mode !== 'bare-node') {
        b = startService('services/balancer/dist/main.js', { ...env, SHOAL_LOG_LEVEL: 'info', SHOAL_BALANCER_EXEC_MODE: mode });
        procs.push(b);
        await b.waitFor((l) => l.msg === 'listening');
      }
      for (const c of cases) {
        const subject = b ? 'shoal.synthetic.exec' : 'shoal.node.m1.exec';
        await run(nc, subject, c.op, c.args, 200, 16, b?.proc.pid); // warm up
        const r = await run(nc, subject, c.op, c.args, c.total, 16, b?.proc.pid);
        const line = { round, mode, case: c.name, concurrency: 16, total: c.total, ...r };
        console.log(JSON.stringify(line));
        results.push(line as never);
      }
      await b?.kill();
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const c of cases) {
    for (const mode of ['forward', 'relay', 'bare-node']) {
      const rs = results.filter((r) => (r as never as { mode: string }).mode === mode && (r as never as { case: string }).case === c.name) as never as Record<string, number>[];
      console.log(JSON.stringify({ summary: true, mode, case: c.name, execsPerSec: median(rs.map((r) => r.execsPerSec!)), p50: median(rs.map((r) => r.p50!)), p99: median(rs.map((r) => r.p99!)), balancerCpuMsPer1k: mode === 'bare-node' ? null : median(rs.map((r) => r.balancerCpuMsPer1k!)) }));
    }
  }
  await nc.close();
} finally {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  await nats.stop();
}
