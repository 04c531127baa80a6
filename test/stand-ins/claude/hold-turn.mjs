// A client process that leases a claude session, starts a turn that never
// ends on its own ([[hang]]), reports the first streamed event, and waits to be
// killed: a service that disappears mid-turn. argv: <nats url> <nodeId|-> <ttlMs> [pool=claude]
import { connect } from '@shoal/client';

const [url, nodeId, ttl, pool = 'claude'] = process.argv.slice(2);
const client = await connect({ servers: [url], name: 'vanishing-client' });
const lease = await client.acquire(pool, { nodeId: nodeId === '-' ? undefined : nodeId, ttlMs: Number(ttl), timeoutMs: 10_000 });
process.stdout.write(JSON.stringify({ msg: 'leased', leaseId: lease.id, resourceId: lease.resourceId, sessionId: lease.info.meta?.session_id }) + '\n');
let first = true;
for await (const e of lease.exec('send', { content: 'think forever [[hang]]' }, { timeoutMs: 600_000 })) {
  if (first) process.stdout.write(JSON.stringify({ msg: 'streaming', type: e.type, subtype: e.subtype }) + '\n');
  first = false;
}
