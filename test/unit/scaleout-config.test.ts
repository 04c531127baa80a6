import { expect } from 'chai';
import { loadConfig } from '@shoal/config';

describe('config: scale-out keys', () => {
  it('max_concurrent_creates: the driver default unless set, per pool or by SHOAL_POOL_<NAME>_MAX_CONCURRENT_CREATES', () => {
    const pools = {
      c: { driver: 'claude-cli' },
      w: { driver: 'weaviate' },
      s: { driver: 'synthetic' },
      t: { driver: 'synthetic', max_concurrent_creates: 7 },
    };
    const cfg = loadConfig({ env: {}, overrides: { pools } });
    expect(Object.fromEntries(Object.values(cfg.pools).map((p) => [p.name, p.maxConcurrentCreates]))).to.include({ c: 4, w: 16, s: 64, t: 7 });
    const env = loadConfig({ env: { SHOAL_POOL_C_MAX_CONCURRENT_CREATES: '2' }, overrides: { pools } });
    expect(env.pools.c!.maxConcurrentCreates).to.equal(2);
    expect(() => loadConfig({ env: {}, overrides: { pools: { c: { driver: 'claude-cli', max_concurrent_creates: 0 } } } })).to.throw(/max_concurrent_creates/);
  });

  it('jetstream: replicas unset (auto) by default, file storage; SHOAL_JETSTREAM_* set them; bad values are refused', () => {
    expect(loadConfig({ env: {} }).jetstream).to.deep.equal({ storage: 'file' });
    expect(loadConfig({ env: { SHOAL_JETSTREAM_REPLICAS: '3', SHOAL_JETSTREAM_STORAGE: 'memory', SHOAL_JETSTREAM_DOMAIN: 'hub' } }).jetstream)
      .to.deep.equal({ replicas: 3, storage: 'memory', domain: 'hub' });
    expect(loadConfig({ env: {}, overrides: { jetstream: { replicas: 5 } } }).jetstream.replicas).to.equal(5);
    expect(() => loadConfig({ env: { SHOAL_JETSTREAM_REPLICAS: '7' } })).to.throw(/jetstream.replicas/);
    expect(() => loadConfig({ env: { SHOAL_JETSTREAM_STORAGE: 'disk' } })).to.throw(/jetstream.storage/);
    expect(() => loadConfig({ env: { SHOAL_JETSTREAM_DOMAIN: 'a.b' } })).to.throw(/jetstream.domain/);
  });
});
