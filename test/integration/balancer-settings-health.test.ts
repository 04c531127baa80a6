import { expect } from 'chai';
import { connect, type NatsConnection } from 'nats';
import type { HealthVerdict } from '@shoal/protocol';
import { createLogger } from '@shoal/runtime';
import { SettingsStore } from '../../services/balancer/src/settings.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

/**
 * The balancer's settings watch routes `health.<nodeId>` verdicts to its
 * health listener, and passes over other services' keys (`target.*`,
 * `autoscaler.*`) without a word. Real nats-server, real KV bucket.
 */
describe('balancer settings store: health verdicts and other services\' keys (real nats-server)', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let nc: NatsConnection;
  let store: SettingsStore;

  before(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
  });
  after(async () => {
    store?.stop();
    await nc?.close();
    await server?.stop();
  });

  it('applies health.* (initial values and live), ignores target.* and autoscaler.* quietly, warns on a bad verdict', async () => {
    const bucket = `settings_health_${process.pid}`;
    const kv = await nc.jetstream().views.kv(bucket, { history: 1 });
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    const verdict = (nodeId: string, healthy: boolean): HealthVerdict => ({ v: 1, nodeId, healthy, at: Date.now(), since: Date.now(), checkerId: 'c1', checks: [{ type: 'ping', ok: healthy }], pools: {}, ...(healthy ? {} : { reason: 'ping: no answer' }) });
    await kv.put('health.n1', enc(verdict('n1', false)));
    await kv.put('target.synthetic', enc({ target: 5 }));
    await kv.put('autoscaler.leader', enc({ id: 'a1', epoch: 3 }));

    const warnings: string[] = [];
    const log = createLogger({}, 'debug', (line) => { const r = JSON.parse(line) as { level: string; msg: string; key?: string }; if (r.level === 'warn') warnings.push(`${r.msg} ${r.key ?? ''}`); });
    const seen = new Map<string, HealthVerdict | undefined>();
    store = new SettingsStore(nc, log, bucket, {
      strategy: () => {},
      weight: () => {},
      health: (nodeId, v) => { seen.set(nodeId, v); },
    }, { timeoutMs: 3000 });
    expect(await store.start()).to.equal(true);
    // Known before start() resolved: a balancer reads this before it serves.
    expect(seen.get('n1')).to.deep.include({ nodeId: 'n1', healthy: false, reason: 'ping: no answer' });

    await kv.put('health.n2', enc(verdict('n2', true)));
    await kv.put('health.n3', enc({ v: 1, nodeId: 'n3', healthy: 'maybe' }));
    await kv.put('health.n4', enc(verdict('someone-else', false)));
    await kv.delete('health.n1');
    await kv.put('target.other', enc({ target: 1 }));
    const until = Date.now() + 5000;
    while (!(seen.has('n2') && seen.get('n1') === undefined && warnings.length >= 2)) {
      if (Date.now() > until) throw new Error(`not applied: ${JSON.stringify([...seen])} ${JSON.stringify(warnings)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(seen.get('n2')).to.deep.include({ healthy: true });
    expect(seen.has('n3')).to.equal(false);
    expect(seen.has('n4')).to.equal(false);
    expect(warnings.filter((w) => /target|autoscaler/.test(w))).to.deep.equal([]);
    expect(warnings.every((w) => w.startsWith('ignoring an invalid setting health.n'))).to.equal(true);
  });
});
