/**
 * Simulated pool-nodes for the membership-scale benchmark: N nodes
 * heartbeating the real format (`shoal.hb.<id>`, msgpack Heartbeat) every
 * second, spread evenly over the second, from this one process. They serve
 * the benchmark's pool but are full (nothing idle, no room to create), plus
 * an `other` pool with idle resources; they answer nothing, so a placement
 * on one would cost a no-responders try.
 *
 * argv: <nats url> <count> [pool, default synthetic]
 */
import { encode, PROTOCOL_VERSION, type Heartbeat } from '@shoal/protocol';
import { connectNats } from '@shoal/runtime';

const [url, countArg, pool = 'synthetic'] = process.argv.slice(2);
if (!url || countArg === undefined) { process.stderr.write('usage: sim-nodes <nats url> <count> [pool]\n'); process.exit(2); }

const nc = await connectNats({ servers: [url], name: 'bench-sim-nodes' });
const INTERVAL = 1000;
const startedAt = Date.now();
const count = Number(countArg);
let seq = 0;

function heartbeat(i: number): Heartbeat {
  const nodeId = `sim-${String(i).padStart(5, '0')}`;
  return {
    v: PROTOCOL_VERSION, nodeId, seq: ++seq, startedAt, intervalMs: INTERVAL, draining: false, host: `sim-host-${i}`, pid: 100_000 + i,
    inFlight: 4, maxConcurrent: 10_000, cpu: 0.5, memory: { rss: 200_000_000, heapUsed: 50_000_000 },
    pools: {
      [pool]: { kind: 'synthetic', total: 4, idle: 0, active: 4, creating: 0, waiting: 0, min: 4, max: 4, target: 4, maxWaiting: 1000, weight: 1, latencyMs: 0.5, execLatencyMs: 1, errorRate: 0, requestRate: 40, reuseRate: 0.99, memoryBytes: 0, available: true },
      other: { kind: 'synthetic', total: 4, idle: 4, active: 0, creating: 0, waiting: 0, min: 4, max: 4, target: 4, maxWaiting: 1000, weight: 1, latencyMs: 0.5, execLatencyMs: 1, errorRate: 0, requestRate: 0, reuseRate: 0.99, memoryBytes: 0, available: true },
    },
  } as Heartbeat;
}

// Ticks of 10 ms, each sending its share of the nodes, so N heartbeats go out per second, evenly.
const TICK = 10;
let next = 0;
let sent = 0;
setInterval(() => {
  if (count <= 0) return;
  const share = Math.ceil(count / (INTERVAL / TICK));
  for (let k = 0; k < share; k++) {
    const i = next;
    next = (next + 1) % count;
    nc.publish(`shoal.hb.sim-${String(i).padStart(5, '0')}`, encode(heartbeat(i)));
    sent++;
  }
}, TICK);

await nc.flush();
process.stdout.write(JSON.stringify({ msg: 'listening', role: 'sim-nodes', count }) + '\n');
setInterval(() => process.stdout.write(JSON.stringify({ msg: 'sent', sent }) + '\n'), 5000).unref();
const stop = () => { void nc.close().finally(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
