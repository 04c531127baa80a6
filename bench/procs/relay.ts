/**
 * Baseline relay: the bare version of what a balancer does with an acquire.
 * Listens in a queue group on `<prefix>.relay.acquire` and, for each request,
 * makes its own request to `<prefix>.acquire` (the responder) and relays the
 * reply back. Same connection options as every Shoal process.
 *
 * argv: <nats url> [prefix, default bench] [mode: request | forward]
 *   request  (default) request to the responder, then respond to the caller;
 *   forward  publish to the responder with the caller's reply subject, so the
 *            responder answers the caller directly (one hop less back).
 */
import { connectNats } from '@shoal/runtime';

const [url, prefix = 'bench', mode = 'request'] = process.argv.slice(2);
if (!url || (mode !== 'request' && mode !== 'forward')) { process.stderr.write('usage: relay <nats url> [prefix] [request|forward]\n'); process.exit(2); }

const nc = await connectNats({ servers: [url], name: 'bench-relay' });
const target = `${prefix}.acquire`;

nc.subscribe(`${prefix}.relay.acquire`, {
  queue: `${prefix}-relays`,
  callback: (err, m) => {
    if (err || !m.reply) return;
    if (mode === 'forward') {
      nc.publish(target, m.data, { reply: m.reply });
      return;
    }
    nc.request(target, m.data, { timeout: 10_000 }).then(
      (r) => { try { m.respond(r.data); } catch { /* caller gone */ } },
      () => { /* the caller times out on its own */ },
    );
  },
});
await nc.flush();
process.stdout.write(JSON.stringify({ msg: 'listening', role: 'relay', mode }) + '\n');

const stop = () => { void nc.close().finally(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
