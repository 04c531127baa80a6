import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@shoal/config';
import { RuntimeSettings } from '@shoal/balancer';
import { configError, fixture } from '../helpers/config.js';

const W = { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 };

describe('runtime settings: which strategy and deadline a pool gets, and from where', () => {
  const mk = () => new RuntimeSettings({
    strategy: 'p2c', strategySource: 'env SHOAL_BALANCER_STRATEGY', performanceWeights: W,
    pools: {
      set: { strategy: 'round_robin', strategySource: 'env AICLI_SESSION_POOL_LOAD_BALANCING', acquireTimeoutMs: 1500, acquireTimeoutSource: 'file /x.yaml' },
      unset: { strategy: 'weighted_round_robin', strategySource: 'default', acquireTimeoutMs: 30_000, acquireTimeoutSource: 'default' },
    },
  });

  it('a pool\'s configured strategy beats balancer.strategy, which is the fallback for unset and unknown pools', () => {
    const r = mk();
    expect(r.strategyOf('set')).to.include({ value: 'round_robin', source: 'env AICLI_SESSION_POOL_LOAD_BALANCING' });
    expect(r.strategyOf('unset')).to.include({ value: 'p2c', source: 'balancer.strategy (env SHOAL_BALANCER_STRATEGY)' });
    expect(r.strategyOf('elsewhere')).to.include({ value: 'p2c' });
  });

  it('a runtime override beats everything, carries who and when, and clearing it returns to the config', () => {
    const r = mk();
    expect(r.setOverride({ strategy: 'least_connections' }, 7, { by: 'ana@laptop', at: 123 })).to.equal(true);
    expect(r.strategyOf('set')).to.include({ value: 'least_connections', source: 'runtime', by: 'ana@laptop', at: 123, revision: 7 });
    expect(r.setOverride({ strategy: 'least_connections' }, 8, {})).to.equal(false);
    expect(r.setOverride(undefined, 9)).to.equal(true);
    expect(r.strategyOf('set')).to.include({ value: 'round_robin' });
  });

  it('acquire deadline: the pool\'s acquire_timeout, 30 s for pools not in the config', () => {
    const r = mk();
    expect(r.acquireTimeoutOf('set')).to.equal(1500);
    expect(r.acquireTimeoutOf('elsewhere')).to.equal(30_000);
  });

  it('rows: a strategy and acquire_timeout per pool, and every runtime weight with who set it', () => {
    const r = mk();
    r.setWeight('node-2', 0, 3, { by: 'bo@ops', at: 5 });
    const rows = r.rows(['seen-in-heartbeats']);
    expect(rows.filter((x) => x.key === 'strategy').map((x) => x.pool)).to.deep.equal(['seen-in-heartbeats', 'set', 'unset']);
    expect(rows.find((x) => x.key === 'weight.node-2')).to.deep.include({ nodeId: 'node-2', value: 0, source: 'runtime', by: 'bo@ops', at: 5 });
    r.setWeight('node-2', undefined, 4);
    expect(r.rows([]).some((x) => x.key === 'weight.node-2')).to.equal(false);
  });

  it('the config says where each value came from; a file from SHOAL_CONFIG says so', () => {
    const c = loadConfig({ env: { SHOAL_CONFIG: fixture('full.yaml'), AICLI_SESSION_POOL_LOAD_BALANCING: 'round_robin' } });
    const p = Object.values(c.pools).find((x) => x.driver === 'synthetic')!;
    expect(p.sources!['load_balancing.strategy']).to.equal('env AICLI_SESSION_POOL_LOAD_BALANCING');
    expect(c.sources!['node.prefix']).to.match(/^file .*full\.yaml \(from env SHOAL_CONFIG\)$/);
    const err = configError(() => loadConfig({ env: { SHOAL_CONFIG: fixture('full.yaml'), SHOAL_HEARTBEAT_INTERVAL: 'soon' } }));
    expect(err.source).to.equal('env SHOAL_HEARTBEAT_INTERVAL');
    const err2 = configError(() => loadConfig({ env: { SHOAL_CONFIG: '/nonexistent/shoal.yaml' } }));
    expect(err2.source).to.equal('env SHOAL_CONFIG');
    // A bad value inside a file named by SHOAL_CONFIG: the error says where the file came from.
    const dir = mkdtempSync(join(tmpdir(), 'shoal-cfg-env-'));
    try {
      writeFileSync(join(dir, 'bad.yaml'), 'node:\n  heartbeat_interval: soon\n');
      const err3 = configError(() => loadConfig({ env: { SHOAL_CONFIG: join(dir, 'bad.yaml') } }));
      expect(err3.message).to.contain('(from env SHOAL_CONFIG)');
      expect(configError(() => loadConfig({ file: join(dir, 'bad.yaml'), env: {} })).message).not.to.contain('SHOAL_CONFIG');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
