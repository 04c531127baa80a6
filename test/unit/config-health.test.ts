import { expect } from 'chai';
import { ConfigError, loadConfig } from '@shoal/config';
import { configError, EXAMPLE } from '../helpers/config.js';

describe('config: health_check and node.memory_limit', () => {
  it("defaults are the design's block; interval unset (each node's pools decide); no memory limit set", () => {
    const c = loadConfig({ env: {} });
    expect(c.healthCheck).to.deep.equal({
      enabled: true, timeoutMs: 5000, failureThreshold: 3, recoveryThreshold: 2, drainAfterMs: 300_000,
      checks: [{ type: 'ping', endpoint: '/health' }, { type: 'response_time', maxLatencyMs: 100 }, { type: 'memory_usage', maxUsagePercent: 80 }],
    });
    expect(c.memoryLimitBytes).to.equal(undefined);
    expect(loadConfig({ file: EXAMPLE, env: {} }).healthCheck).to.deep.equal(c.healthCheck);
  });

  it('reads the block from file, env and overrides; a checks list replaces the default list', () => {
    const c = loadConfig({
      env: { SHOAL_HEALTH_CHECK_INTERVAL: '2s', SHOAL_NODE_MEMORY_LIMIT: '512MB', SHOAL_HEALTH_CHECK_ENABLED: 'false' },
      overrides: { health_check: { timeout: '750ms', failure_threshold: 4, recovery_threshold: 1, drain_after: 0, checks: [{ type: 'memory_usage', max_usage: 50 }, { type: 'ping' }] } },
    });
    expect(c.healthCheck).to.deep.equal({
      enabled: false, intervalMs: 2000, timeoutMs: 750, failureThreshold: 4, recoveryThreshold: 1, drainAfterMs: 0,
      checks: [{ type: 'memory_usage', maxUsagePercent: 50 }, { type: 'ping', endpoint: '/health' }],
    });
    expect(c.memoryLimitBytes).to.equal(512 * 1024 * 1024);
  });

  it('bad checks name the key, the item and why', () => {
    const bad = (checks: unknown, why: RegExp) => {
      const err = configError(() => loadConfig({ env: {}, overrides: { 'health_check.checks': checks } }));
      expect(err).to.be.instanceOf(ConfigError);
      expect(err.key).to.equal('health_check.checks');
      expect(err.message).to.match(why);
    };
    bad([{ type: 'disk' }], /item 0: type must be one of ping, response_time, memory_usage/);
    bad([{ type: 'memory_usage', max_usage: '180%' }], /max_usage must be a percentage/);
    bad([{ type: 'response_time', max_latency: 'soon' }], /max_latency must be a duration/);
    bad([{ type: 'ping', endpoint: '/metrics' }], /endpoint must be one of \/health, \/healthz, ping/);
    bad([{ type: 'ping', max_usage: '1%' }], /unknown key max_usage for a ping check/);
    bad('ping', /must be a list/);
    expect(() => loadConfig({ env: {}, overrides: { 'health_check.failure_threshold': 0 } })).to.throw(ConfigError, 'health_check.failure_threshold');
    expect(() => loadConfig({ env: {}, overrides: { 'health_check.frequency': '1s' } })).to.throw(ConfigError, 'unknown key');
    expect(() => loadConfig({ env: { SHOAL_NODE_MEMORY_LIMIT: 'lots' } })).to.throw(ConfigError, 'node.memory_limit');
  });

  it('health is a reserved pool name (the verdict subjects are <prefix>.health.>)', () => {
    expect(() => loadConfig({ env: {}, overrides: { 'pools.health.driver': 'synthetic' } })).to.throw(ConfigError, 'reserved');
  });
});
