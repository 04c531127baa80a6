import { expect } from 'chai';
import { connect, type NatsConnection } from 'nats';
import { clusterSize, defaultReplicas, isJetStreamUnavailable, openBucket, type Logger } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

/** @shoal/runtime openBucket on one real nats-server: the `jetstream` config keys do what they say. */
describe('openBucket (real nats-server)', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let domainServer: NatsServer;
  let nc: NatsConnection;
  let dnc: NatsConnection;

  before(async () => {
    [server, domainServer] = await Promise.all([startNatsServer(), startNatsServer({ domain: 'hub' })]);
    [nc, dnc] = await Promise.all([connect({ servers: server.url }), connect({ servers: domainServer.url })]);
  });
  after(async () => {
    await Promise.all([nc?.close(), dnc?.close()]);
    await Promise.all([server?.stop(), domainServer?.stop()]);
  });

  const info = async (c: NatsConnection, bucket: string, domain?: string) =>
    (await (await c.jetstreamManager(domain ? { domain } : {})).streams.info(`KV_${bucket}`)).config;

  it('defaults to 1 replica on a server that is not clustered, file storage, history 1', async () => {
    expect(clusterSize(nc)).to.equal(1);
    expect(defaultReplicas(nc)).to.equal(1);
    await openBucket(nc, 'shoal_t1');
    expect(await info(nc, 'shoal_t1')).to.include({ num_replicas: 1, storage: 'file', max_msgs_per_subject: 1 });
  });

  it('storage: memory creates a memory stream; an existing bucket is bound as it is', async () => {
    const kv = await openBucket(nc, 'shoal_t2', { storage: 'memory' });
    await kv.put('k', new TextEncoder().encode('1'));
    expect(await info(nc, 'shoal_t2')).to.include({ storage: 'memory' });
    const again = await openBucket(nc, 'shoal_t2');
    expect(new TextDecoder().decode((await again.get('k'))!.value)).to.equal('1');
  });

  it('ttlMs is the max_age: set at creation, and an existing bucket with another is changed to it; a storage that differs is kept, with a warning', async () => {
    const lines: { level: string; msg: string }[] = [];
    const log: Logger = {
      debug: () => {}, error: (msg) => lines.push({ level: 'error', msg }),
      info: (msg) => lines.push({ level: 'info', msg }), warn: (msg) => lines.push({ level: 'warn', msg }),
      child: () => log,
    };
    await openBucket(nc, 'shoal_t6', { ttlMs: 1500 });
    expect(await info(nc, 'shoal_t6')).to.include({ max_age: 1500 * 1e6, storage: 'file' });
    // A lease changed in the config (autoscaler.lease_ttl) is the lease in force once a service opens the bucket.
    await openBucket(nc, 'shoal_t6', { ttlMs: 4000, storage: 'memory', log });
    expect(await info(nc, 'shoal_t6')).to.include({ max_age: 4000 * 1e6, storage: 'file' });
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).to.deep.equal(['bucket keeps its storage (a stream cannot change it); delete the bucket to have it created anew']);
    expect(lines.some((l) => l.level === 'info' && /configured settings/.test(l.msg))).to.equal(true);
    // Nothing to change: no update, no line.
    lines.length = 0;
    await openBucket(nc, 'shoal_t6', { ttlMs: 4000, log });
    expect(lines).to.deep.equal([]);
    // A shorter lease too: below the duplicate window the bucket was created with (from its old max_age).
    await openBucket(nc, 'shoal_t7', { ttlMs: 10_000 });
    await openBucket(nc, 'shoal_t7', { ttlMs: 2000, log });
    expect(await info(nc, 'shoal_t7')).to.include({ max_age: 2000 * 1e6 });
    expect(lines.filter((l) => l.level === 'warn')).to.deep.equal([]);
  });

  it('replicas set explicitly beyond what the server can hold is an error, not a silent 1', async () => {
    let err: unknown;
    try { await openBucket(nc, 'shoal_t3', { replicas: 3 }); } catch (e) { err = e; }
    expect(String((err as Error)?.message)).to.match(/replicas|insufficient/i);
  });

  it('domain: buckets live in that JetStream domain; without it (or another) the hub is not reached', async () => {
    const kv = await openBucket(dnc, 'shoal_t4', { domain: 'hub', timeoutMs: 1000 });
    await kv.put('k', new TextEncoder().encode('x'));
    expect(await info(dnc, 'shoal_t4', 'hub')).to.include({ name: 'KV_shoal_t4' });
    let err: unknown;
    try { await openBucket(dnc, 'shoal_t5', { domain: 'elsewhere', timeoutMs: 1000 }); } catch (e) { err = e; }
    expect(isJetStreamUnavailable(err), String(err)).to.equal(true);
  });
});
