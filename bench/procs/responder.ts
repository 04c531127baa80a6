/**
 * Baseline responder: the trivial far end of a bare NATS request-reply.
 * Answers `<subject>.acquire` and `<subject>.release` with a constant msgpack
 * reply shaped and sized like the pool-node's (a lease, a release ack), with
 * the same connection options as every Shoal process (`connectNats`). No
 * decoding, no validation, no state: what is left is NATS and the event loop.
 *
 * argv: <nats url> [subject prefix, default bench]
 */
import { connectNats } from '@shoal/runtime';
import { encode, newId, PROTOCOL_VERSION } from '@shoal/protocol';

const [url, prefix = 'bench'] = process.argv.slice(2);
if (!url) { process.stderr.write('usage: responder <nats url> [prefix]\n'); process.exit(2); }

const nc = await connectNats({ servers: [url], name: 'bench-responder' });
const lease = encode({
  v: PROTOCOL_VERSION, ok: true,
  data: { leaseId: newId(), nodeId: newId(), pool: 'synthetic', resourceId: newId(), expiresAt: Date.now() + 60_000, ttlMs: 60_000, reused: true },
});
const released = encode({ v: PROTOCOL_VERSION, ok: true, data: { released: newId() } });

nc.subscribe(`${prefix}.acquire`, { callback: (err, m) => { if (!err) m.respond(lease); } });
nc.subscribe(`${prefix}.release`, { callback: (err, m) => { if (!err) m.respond(released); } });
await nc.flush();
process.stdout.write(JSON.stringify({ msg: 'listening', role: 'responder', replyBytes: { acquire: lease.length, release: released.length } }) + '\n');

const stop = () => { void nc.close().finally(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
