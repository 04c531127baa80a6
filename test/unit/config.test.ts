import { expect } from 'chai';
import { ConfigError, loadConfig, parseDuration, parseSize } from '@shoal/config';
import { configError, EXAMPLE, fixture } from '../helpers/config.js';

const MB = 1024 * 1024;


/** The message must let an operator find the value: key, value as written, source. */
function expectNames(err: ConfigError, key: string, value: string, source: string) {
  expect(err.key).to.equal(key);
  expect(err.source).to.equal(source);
  expect(err.message).to.contain(`config: ${key} = ${value} (from ${source}): `);
}

describe('config', () => {
  describe('parseDuration / parseSize', () => {
    it('reads durations in ms, bare numbers as ms', () => {
      const cases: [string | number, number][] = [
        ['300ms', 300], ['30s', 30_000], ['1.5s', 1500], ['5m', 300_000], ['1h', 3_600_000], ['1d', 86_400_000],
        ['250', 250], [42, 42], [' 2 s ', 2000], ['0', 0],
      ];
      for (const [input, ms] of cases) expect(parseDuration(input), String(input)).to.equal(ms);
    });
    it('reads sizes in binary units, bare numbers as bytes', () => {
      const cases: [string | number, number][] = [
        ['100MB', 100 * MB], ['1GB', 1024 * MB], ['512KB', 512 * 1024], ['1.5GiB', 1.5 * 1024 * MB],
        ['64k', 65_536], ['100mb', 100 * MB], ['10B', 10], ['2048', 2048], [4096, 4096],
      ];
      for (const [input, bytes] of cases) expect(parseSize(input), String(input)).to.equal(bytes);
    });
    it('throws a ConfigError naming the key on junk', () => {
      for (const junk of ['', 'soon', '5 minutes', '-1s', '1.2.3s', '10x', NaN, -5, null, {}]) {
        expect(() => parseDuration(junk as never), String(junk)).to.throw(ConfigError);
      }
      for (const junk of ['', 'big', '1PB', '-1MB', '1 M B', Infinity]) {
        expect(() => parseSize(junk as never), String(junk)).to.throw(ConfigError);
      }
      expectNames(configError(() => parseDuration('5x', 'pools.s.options.create_latency')), 'pools.s.options.create_latency', '"5x"', 'pool options');
    });
  });

  describe('loading', () => {
    it('loads the shipped example: a light synthetic pool over the design block', () => {
      const c = loadConfig({ file: EXAMPLE, env: {} });
      expect(Object.keys(c.pools)).to.deep.equal(['synthetic', 'claude', 'weaviate']);
      const p = c.pools.synthetic!;
      expect([p.driver, p.minSize, p.maxSize, p.initialSize]).to.deep.equal(['synthetic', 2, 20, 2]);
      expect(p.options).to.deep.equal({ create_latency: '5ms', exec_latency: '1ms', failure_rate: 0 });
      // Inherited from the design's session_pool block. (Parsing only, here and below: these tests prove a key
      // is read, typed and inherited, never that it does anything — the tests of the code that reads
      // auto_scaling.* and load_balancing.* prove that.)
      expect(p.autoScaling).to.deep.equal({ enabled: true, scaleUpThreshold: 0.8, scaleDownThreshold: 0.3, scaleUpIncrement: 5, scaleDownIncrement: 2, cooldownMs: 30_000, stabilizationWindowMs: 60_000, predictive: false, scaleDownToFit: false });
      expect(p.scalingPolicies).to.deep.equal([]);
      expect(p.loadBalancing).to.deep.equal({ strategy: 'weighted_round_robin', healthCheckIntervalMs: 30_000, circuitBreakerEnabled: true });
      expect(p.sessionManagement).to.deep.equal({
        enableReuse: true, idleTimeoutMs: 300_000, maxLifetimeMs: 3_600_000, lifetimeJitter: 0.1, maxReuseCount: 100,
        contextReset: true, cleanupIntervalMs: 60_000, validateOnReturn: true, validateSkipWindowMs: 500, maxParked: 16, parkTtlMs: 600_000,
      });
      expect(p.resourceLimits).to.deep.equal({ maxMemoryPerSessionBytes: 100 * MB, maxTotalMemoryBytes: 1024 * MB, maxConcurrentRequests: 1000, maxPayloadBytes: MB });
      expect(p.create).to.deep.equal({ timeoutMs: 10_000, retryBaseMs: 100, retryMaxMs: 10_000 });
      expect([p.maxWaitingClients, p.acquireTimeoutMs, p.leaseTtlMs, p.weight]).to.deep.equal([1000, 30_000, 60_000, 1]);
      expect(c).to.include({ prefix: 'shoal', heartbeatIntervalMs: 1000, drainGraceMs: 30_000, maxConcurrentRequests: 10_000, logLevel: 'info' });
      expect(c.nodeId).to.equal(undefined);
      expect(c.nats).to.deep.equal({ servers: ['nats://127.0.0.1:4222'] });
      expect(c.http).to.deep.equal({ host: '127.0.0.1', port: 8080 });
      expect(c.balancer).to.deep.equal({
        strategy: 'p2c', suspectAfterIntervals: 3, goneAfterIntervals: 5, circuitFailureThreshold: 5, circuitCooldownMs: 5000,
        performanceWeights: { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 },
      });
    });

    it('without a file gives built-in defaults and one small synthetic pool', () => {
      const c = loadConfig({ env: {} });
      const p = c.pools.synthetic!;
      expect([p.driver, p.minSize, p.maxSize, p.initialSize]).to.deep.equal(['synthetic', 2, 10, 2]);
      expect(p.sessionManagement.idleTimeoutMs).to.equal(300_000);
      expect(c.nats.servers).to.deep.equal(['nats://127.0.0.1:4222']);
      expect(loadConfig({ file: fixture('empty.yaml'), env: {} }).pools).to.have.keys('synthetic');
    });

    it('ignores top-level x- keys and merges YAML anchors', () => {
      const { a, b } = loadConfig({ file: fixture('anchors.yaml'), env: {} }).pools;
      expect([a!.minSize, a!.maxSize, b!.minSize, b!.maxSize]).to.deep.equal([1, 3, 1, 5]);
    });

    it('takes the file from SHOAL_CONFIG when none is given', () => {
      expect(loadConfig({ env: { SHOAL_CONFIG: fixture('full.yaml') } }).pools).to.have.keys('synthetic', 'claude-main', 'vectors');
    });

    it('parses durations, sizes and lists in the file; pools inherit session_pool', () => {
      const c = loadConfig({ file: fixture('full.yaml'), env: {} });
      expect(c.nats).to.deep.equal({ servers: ['nats://a:4222', 'nats://b:4222'], user: 'shoal', pass: 'hunter2', tls: { caFile: '/etc/ca.pem' } });
      expect(c).to.include({ nodeId: 'node-1', prefix: 'acme.shoal', heartbeatIntervalMs: 250, drainGraceMs: 60_000, logLevel: 'debug' });
      expect(c.http.port).to.equal(0);
      expect(c.balancer.strategy).to.equal('least_connections');
      expect(c.balancer.performanceWeights).to.deep.equal({ latency: 0.7, throughput: 0.3, errorRate: 0.2, resource: 0.1 });

      const { synthetic, 'claude-main': claude, vectors } = c.pools;
      expect([synthetic!.minSize, synthetic!.maxSize, synthetic!.initialSize]).to.deep.equal([1, 6, 3]);
      expect(synthetic!.acquireTimeoutMs).to.equal(1500);
      expect(synthetic!.sessionManagement).to.include({ idleTimeoutMs: 300_000, maxLifetimeMs: 7_200_000 });
      expect(synthetic!.resourceLimits).to.include({ maxMemoryPerSessionBytes: 512 * 1024, maxTotalMemoryBytes: 1.5 * 1024 * MB });
      expect(synthetic!.options).to.deep.equal({ create_latency: '5ms', failure_rate: 0.1 });
      expect(claude).to.include({ name: 'claude-main', driver: 'claude-cli', minSize: 2, maxSize: 8, initialSize: 3 });
      expect(claude!.autoScaling.enabled).to.equal(false);
      expect(claude!.autoScaling.scaleUpThreshold).to.equal(0.8);
      expect(claude!.options).to.deep.equal({});
      expect(vectors).to.include({ driver: 'weaviate', minSize: 1, maxSize: 4, initialSize: 2 });
      expect(vectors!.resourceLimits.maxPayloadBytes).to.equal(4 * MB);
    });
  });

  describe('precedence', () => {
    it('node keys: default < file < SHOAL_* env < overrides', () => {
      const file = fixture('full.yaml');
      expect(loadConfig({ env: {} }).http.port).to.equal(8080);
      expect(loadConfig({ file, env: {} }).http.port).to.equal(0);
      expect(loadConfig({ file, env: { SHOAL_HTTP_PORT: '-1' } }).http.port).to.equal(-1);
      expect(loadConfig({ file, env: { SHOAL_HTTP_PORT: '-1' }, overrides: { 'node.http_port': 9000 } }).http.port).to.equal(9000);
      expect(loadConfig({ file, env: {}, overrides: { node: { http_port: 9001 } } }).http.port).to.equal(9001);
    });

    it('pool keys: default < session_pool < pool block < AICLI_SESSION_POOL_* < SHOAL_POOL_<NAME>_* < overrides', () => {
      const file = fixture('full.yaml');
      const maxOf = (opts: Parameters<typeof loadConfig>[0]) => loadConfig(opts).pools['claude-main']!.maxSize;
      expect(loadConfig({ env: {}, overrides: { 'pools.claude-main.driver': 'claude-cli' } }).pools['claude-main']!.maxSize).to.equal(100);
      expect(maxOf({ file, env: {} })).to.equal(8); // session_pool
      expect(loadConfig({ file, env: {} }).pools.synthetic!.maxSize).to.equal(6); // the pool's own block
      const env: Record<string, string> = { AICLI_SESSION_POOL_MAX_SIZE: '30' };
      expect(maxOf({ file, env })).to.equal(30);
      expect(loadConfig({ file, env }).pools.synthetic!.maxSize).to.equal(30); // beats the pool block too
      env.SHOAL_POOL_CLAUDE_MAIN_MAX_SIZE = '40';
      expect(maxOf({ file, env })).to.equal(40);
      expect(loadConfig({ file, env }).pools.synthetic!.maxSize).to.equal(30); // per pool only
      expect(maxOf({ file, env, overrides: { 'session_pool.max_size': 50 } })).to.equal(50);
      expect(maxOf({ file, env, overrides: { 'session_pool.max_size': 50, 'pools.claude-main.max_size': 60 } })).to.equal(60);
    });

    it('reads every AICLI_SESSION_POOL_* variable into the pools, except weaviate pools (parsing only)', () => {
      const env = {
        AICLI_SESSION_POOL_MIN_SIZE: '3', AICLI_SESSION_POOL_MAX_SIZE: '9', AICLI_SESSION_POOL_INITIAL_SIZE: '4',
        AICLI_SESSION_POOL_AUTO_SCALING: 'false', AICLI_SESSION_POOL_LOAD_BALANCING: 'round_robin',
        AICLI_SESSION_POOL_IDLE_TIMEOUT: '10s', AICLI_SESSION_POOL_MAX_LIFETIME: '1h', AICLI_SESSION_POOL_CLEANUP_INTERVAL: '5s',
        AICLI_SESSION_POOL_ENABLE_REUSE: 'no', AICLI_SESSION_POOL_MAX_CONCURRENT_REQUESTS: '7',
      };
      const c = loadConfig({ file: fixture('full.yaml'), env });
      const p = c.pools['claude-main']!;
      expect([p.minSize, p.maxSize, p.initialSize]).to.deep.equal([3, 9, 4]);
      expect(p.autoScaling.enabled).to.equal(false);
      expect(p.loadBalancing.strategy).to.equal('round_robin');
      expect(p.sessionManagement).to.include({ idleTimeoutMs: 10_000, maxLifetimeMs: 3_600_000, cleanupIntervalMs: 5000, enableReuse: false });
      expect(p.resourceLimits.maxConcurrentRequests).to.equal(7);
      expect(c.pools.vectors).to.include({ minSize: 1, maxSize: 4, initialSize: 2 });
      expect(c.pools.vectors!.autoScaling.enabled).to.equal(true);
    });

    it('reads nested per-pool variables and node variables', () => {
      const c = loadConfig({
        file: fixture('full.yaml'),
        env: {
          SHOAL_POOL_VECTORS_SESSION_MANAGEMENT_IDLE_TIMEOUT: '2m', SHOAL_POOL_SYNTHETIC_AUTO_SCALING_ENABLED: 'off',
          SHOAL_NATS_URL: 'nats://x:1, nats://y:2', SHOAL_NODE_ID: 'n2', SHOAL_PREFIX: 'p', SHOAL_LOG_LEVEL: 'warn',
          SHOAL_NATS_USER: '', SHOAL_NATS_TOKEN: 't', SHOAL_NATS_CREDS: '/c.creds', SHOAL_NATS_TLS_KEY: '/k.pem',
        },
      });
      expect(c.pools.vectors!.sessionManagement.idleTimeoutMs).to.equal(120_000);
      expect(c.pools.synthetic!.autoScaling.enabled).to.equal(false);
      expect(c.nats).to.deep.equal({
        servers: ['nats://x:1', 'nats://y:2'], user: 'shoal', pass: 'hunter2', token: 't', credsFile: '/c.creds',
        tls: { caFile: '/etc/ca.pem', keyFile: '/k.pem' },
      });
      expect(c).to.include({ nodeId: 'n2', prefix: 'p', logLevel: 'warn' });
    });

    it('initial_size: unset means min_size; an inherited one is clamped, an explicit one must fit', () => {
      expect(loadConfig({ env: {}, overrides: { pools: { s: { driver: 'synthetic', min_size: 3, max_size: 5 } } } }).pools.s!.initialSize).to.equal(3);
      // session_pool's initial_size 3 is above this pool's max_size 2.
      expect(loadConfig({ env: {}, overrides: { 'session_pool.initial_size': 3, 'pools.s': { driver: 'synthetic', min_size: 1, max_size: 2 } } }).pools.s!.initialSize).to.equal(2);
      // The variable raises min_size above the file's initial_size.
      expect(loadConfig({ file: EXAMPLE, env: { AICLI_SESSION_POOL_MIN_SIZE: '5', AICLI_SESSION_POOL_MAX_SIZE: '20' } }).pools.synthetic!.initialSize).to.equal(5);
      const err = configError(() => loadConfig({ file: fixture('bad-initial.yaml'), env: {} }));
      expectNames(err, 'pools.synthetic.initial_size', '9', `file ${fixture('bad-initial.yaml')}`);
    });
  });

  describe('errors name key, value and source', () => {
    const fileErr = (name: string) => configError(() => loadConfig({ file: fixture(name), env: {} }));
    const src = (name: string) => `file ${fixture(name)}`;

    it('wrong type', () => {
      expectNames(fileErr('wrong-type.yaml'), 'pools.synthetic.max_size', '"lots"', src('wrong-type.yaml'));
      expect(fileErr('wrong-type.yaml').message).to.contain('must be an integer');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'pools.synthetic.weight': 'heavy' } })), 'pools.synthetic.weight', '"heavy"', 'overrides');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'pools.synthetic.auto_scaling': 5 } })), 'pools.synthetic.auto_scaling', '5', 'overrides');
      expectNames(configError(() => loadConfig({ env: { SHOAL_HTTP_PORT: '80x' } })), 'node.http_port', '"80x"', 'env SHOAL_HTTP_PORT');
    });

    it('bad duration, named where it was written', () => {
      const err = fileErr('bad-duration.yaml');
      expectNames(err, 'session_pool.session_management.idle_timeout', '"5 minutes"', src('bad-duration.yaml'));
      expect(err.message).to.contain('duration');
      expectNames(configError(() => loadConfig({ env: { AICLI_SESSION_POOL_IDLE_TIMEOUT: 'soon' } })), 'pools.synthetic.session_management.idle_timeout', '"soon"', 'env AICLI_SESSION_POOL_IDLE_TIMEOUT');
    });

    it('min_size > max_size', () => {
      const err = fileErr('bad-min-max.yaml');
      expectNames(err, 'pools.claude.min_size', '12', src('bad-min-max.yaml'));
      expect(err.message).to.contain('max_size (4)');
      // Blame the later setting: here the variable.
      expectNames(configError(() => loadConfig({ file: EXAMPLE, env: { AICLI_SESSION_POOL_MAX_SIZE: '1' } })), 'pools.synthetic.max_size', '"1"', 'env AICLI_SESSION_POOL_MAX_SIZE');
    });

    it('unknown keys, at any level', () => {
      const err = fileErr('typo.yaml');
      expectNames(err, 'pools.synthetic.min_sise', '2', src('typo.yaml'));
      expect(err.message).to.contain('unknown key').and.contain('min_size');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'session_pool.auto_scaling.enable': true } })), 'session_pool.auto_scaling.enable', 'true', 'overrides');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'session_pool.driver': 'synthetic' } })), 'session_pool.driver', '"synthetic"', 'overrides');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { sessionpool: {} } })), 'sessionpool', '{}', 'overrides');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'node.port': 1 } })), 'node.port', '1', 'overrides');
    });

    it('a mistyped SHOAL_POOL_* variable', () => {
      expectNames(configError(() => loadConfig({ env: { SHOAL_POOL_SYNTHETIC_MAX_SISE: '5' } })), 'SHOAL_POOL_SYNTHETIC_MAX_SISE', '"5"', 'env SHOAL_POOL_SYNTHETIC_MAX_SISE');
      expect(() => loadConfig({ env: { SHOAL_POOL_NOPE_MAX_SIZE: '5' } })).to.throw(ConfigError, 'names no pool');
    });

    it('unknown or missing driver', () => {
      expectNames(fileErr('unknown-driver.yaml'), 'pools.cache.driver', '"redis"', src('unknown-driver.yaml'));
      expect(fileErr('unknown-driver.yaml').message).to.contain('synthetic, claude-cli, weaviate');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'pools.x.min_size': 1 } })), 'pools.x.driver', 'undefined', 'overrides');
    });

    it('bad strategy, from file or env', () => {
      expectNames(fileErr('bad-strategy.yaml'), 'balancer.strategy', '"fastest"', src('bad-strategy.yaml'));
      const err = configError(() => loadConfig({ env: { AICLI_SESSION_POOL_LOAD_BALANCING: 'random' } }));
      expectNames(err, 'pools.synthetic.load_balancing.strategy', '"random"', 'env AICLI_SESSION_POOL_LOAD_BALANCING');
      expect(err.message).to.contain('weighted_round_robin');
    });

    it('bad env bool', () => {
      const err = configError(() => loadConfig({ env: { AICLI_SESSION_POOL_AUTO_SCALING: 'maybe' } }));
      expectNames(err, 'pools.synthetic.auto_scaling.enabled', '"maybe"', 'env AICLI_SESSION_POOL_AUTO_SCALING');
      expect(err.message).to.contain('true or false');
      expectNames(configError(() => loadConfig({ env: { SHOAL_POOL_SYNTHETIC_SESSION_MANAGEMENT_CONTEXT_RESET: 'yep' } })),
        'pools.synthetic.session_management.context_reset', '"yep"', 'env SHOAL_POOL_SYNTHETIC_SESSION_MANAGEMENT_CONTEXT_RESET');
    });

    it('out-of-range and cross-field values', () => {
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'session_pool.auto_scaling.scale_up_threshold': 1.5 } })), 'session_pool.auto_scaling.scale_up_threshold', '1.5', 'overrides');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'pools.synthetic.auto_scaling.scale_down_threshold': 0.9 } })), 'pools.synthetic.auto_scaling.scale_down_threshold', '0.9', 'overrides');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'pools.synthetic.max_size': 0 } })), 'pools.synthetic.max_size', '0', 'overrides');
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'balancer.gone_after': 2 } })), 'balancer.gone_after', '2', 'overrides');
      expectNames(configError(() => loadConfig({ env: { SHOAL_HTTP_PORT: '70000' } })), 'node.http_port', '"70000"', 'env SHOAL_HTTP_PORT');
      // Every parked key rides in every heartbeat: the cap keeps it under NATS max_payload.
      expectNames(configError(() => loadConfig({ env: {}, overrides: { 'pools.synthetic.session_management.max_parked': 1025 } })), 'pools.synthetic.session_management.max_parked', '1025', 'overrides');
      expect(loadConfig({ env: {}, overrides: { 'pools.synthetic.session_management.max_parked': 1024 } }).pools.synthetic!.sessionManagement.maxParked).to.equal(1024);
    });

    it('bad pool names', () => {
      expectNames(configError(() => loadConfig({ env: {}, overrides: { pools: { 'a b': { driver: 'synthetic' } } } })), 'pools.a b', '"a b"', 'overrides');
      expect(() => loadConfig({ env: {}, overrides: { 'pools.hb.driver': 'synthetic' } })).to.throw(ConfigError, 'reserved');
      expect(() => loadConfig({ env: {}, overrides: { 'pools.my-pool.driver': 'synthetic', 'pools.my_pool.driver': 'synthetic' } })).to.throw(ConfigError, 'SHOAL_POOL_MY_POOL_');
    });

    it('hides secrets', () => {
      const err = configError(() => loadConfig({ env: {}, overrides: { 'nats.pass': 12345 } }));
      expectNames(err, 'nats.pass', '"[redacted]"', 'overrides');
      expect(err.message).not.to.contain('12345');
    });

    it('missing or unparseable file', () => {
      const missing = configError(() => loadConfig({ file: '/nonexistent/shoal.yaml', env: {} }));
      expectNames(missing, 'file', '"/nonexistent/shoal.yaml"', 'argument');
      expect(missing.message).to.contain('cannot read');
      expectNames(configError(() => loadConfig({ env: { SHOAL_CONFIG: '/nonexistent/x.yaml' } })), 'file', '"/nonexistent/x.yaml"', 'env SHOAL_CONFIG');
      const broken = configError(() => loadConfig({ file: fixture('broken.yaml'), env: {} }));
      expectNames(broken, 'file', JSON.stringify(fixture('broken.yaml')), 'argument');
      expect(broken.message).to.contain('not valid YAML');
    });
  });
});
