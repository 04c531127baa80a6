import { expect } from 'chai';
import { ConfigError, loadConfig } from '@shoal/config';
import { configError, EXAMPLE, fixture } from '../helpers/config.js';
import { parseSettings } from '@shoal/pool-node/weaviate';



describe('weaviate config: the design variables and driver options', () => {
  it('the example config has a weaviate pool at localhost:8080, gRPC 50051, one warm connection', () => {
    const p = loadConfig({ file: EXAMPLE, env: {} }).pools.weaviate!;
    expect(p).to.include({ driver: 'weaviate', minSize: 1, initialSize: 1, maxSize: 10 });
    expect(p.options).to.include({ host: 'localhost', port: 8080, grpc_port: 50051, use_pool: true, health_check_interval: '60s' });
    expect(p.sessionManagement.maxLifetimeMs).to.equal(3_600_000);
    const s = parseSettings(p.options, 'weaviate', {});
    expect(s).to.include({ httpHost: 'localhost', httpPort: 8080, grpcHost: 'localhost', grpcPort: 50051, usePool: true, healthCheckIntervalMs: 60_000 });
  });

  it('VECTOR_STORE_* and WEAVIATE_* set weaviate pools only, seconds as in the design', () => {
    const env = {
      VECTOR_STORE_USE_POOL: 'false', VECTOR_STORE_MIN_CONNECTIONS: '2', VECTOR_STORE_MAX_CONNECTIONS: '10',
      VECTOR_STORE_CONNECTION_LIFETIME: '600', VECTOR_STORE_HEALTH_CHECK_INTERVAL: '30',
      WEAVIATE_HOST: 'weaviate.internal', WEAVIATE_PORT: '8081', WEAVIATE_GRPC_PORT: '50052', WEAVIATE_API_KEY: 'secret',
    };
    const c = loadConfig({ file: fixture('full.yaml'), env });
    const v = c.pools.vectors!;
    expect(v).to.include({ minSize: 2, maxSize: 10, initialSize: 2 });
    expect(v.sessionManagement.maxLifetimeMs).to.equal(600_000);
    expect(v.options).to.deep.equal({ use_pool: false, health_check_interval: '30s', host: 'weaviate.internal', port: 8081, grpc_port: 50052, api_key: 'secret' });
    const s = parseSettings(v.options, 'vectors', {});
    expect(s).to.include({ usePool: false, healthCheckIntervalMs: 30_000, httpHost: 'weaviate.internal', grpcHost: 'weaviate.internal', httpPort: 8081, grpcPort: 50052, apiKey: 'secret' });
    // Other pools keep their own numbers.
    expect(c.pools['claude-main']).to.include({ minSize: 2, maxSize: 8 });
    expect(c.pools.synthetic!.options).to.not.have.property('host');
    // A unit may be written.
    expect(loadConfig({ file: fixture('full.yaml'), env: { VECTOR_STORE_CONNECTION_LIFETIME: '2h' } }).pools.vectors!.sessionManagement.maxLifetimeMs).to.equal(7_200_000);
  });

  it('precedence: pool block < VECTOR_STORE_* < SHOAL_POOL_<NAME>_* < overrides; AICLI_* never reach weaviate pools', () => {
    const file = fixture('full.yaml');
    const maxOf = (env: Record<string, string>, overrides?: Record<string, unknown>) => loadConfig({ file, env, overrides }).pools.vectors!.maxSize;
    expect(maxOf({})).to.equal(4);
    expect(maxOf({ AICLI_SESSION_POOL_MAX_SIZE: '30' })).to.equal(4);
    expect(maxOf({ VECTOR_STORE_MAX_CONNECTIONS: '6' })).to.equal(6);
    expect(maxOf({ VECTOR_STORE_MAX_CONNECTIONS: '6', SHOAL_POOL_VECTORS_MAX_SIZE: '7' })).to.equal(7);
    expect(maxOf({ VECTOR_STORE_MAX_CONNECTIONS: '6' }, { 'pools.vectors.max_size': 9 })).to.equal(9);
    // WEAVIATE_HOST beats the file's option; an override beats both.
    const host = (env: Record<string, string>, overrides?: Record<string, unknown>) => loadConfig({ file: EXAMPLE, env, overrides }).pools.weaviate!.options.host;
    expect(host({ WEAVIATE_HOST: 'w1' })).to.equal('w1');
    expect(host({ WEAVIATE_HOST: 'w1' }, { 'pools.weaviate.options.host': 'w2' })).to.equal('w2');
    // The variable raises min_size above the file's initial_size.
    expect(loadConfig({ file: EXAMPLE, env: { VECTOR_STORE_MIN_CONNECTIONS: '3' } }).pools.weaviate!.initialSize).to.equal(3);
  });

  it('a bad variable names itself, its key and value (never the API key)', () => {
    const expectNames = (err: ConfigError, key: string, value: string, source: string) => {
      expect(err.key).to.equal(key);
      expect(err.source).to.equal(source);
      expect(err.message).to.contain(`config: ${key} = ${value} (from ${source}): `);
    };
    const file = fixture('full.yaml');
    expectNames(configError(() => loadConfig({ file, env: { VECTOR_STORE_USE_POOL: 'maybe' } })), 'pools.vectors.options.use_pool', '"maybe"', 'env VECTOR_STORE_USE_POOL');
    expectNames(configError(() => loadConfig({ file, env: { WEAVIATE_PORT: 'http' } })), 'pools.vectors.options.port', '"http"', 'env WEAVIATE_PORT');
    expectNames(configError(() => loadConfig({ file, env: { WEAVIATE_GRPC_PORT: '70000' } })), 'pools.vectors.options.grpc_port', '"70000"', 'env WEAVIATE_GRPC_PORT');
    expectNames(configError(() => loadConfig({ file, env: { VECTOR_STORE_CONNECTION_LIFETIME: 'soon' } })), 'pools.vectors.session_management.max_lifetime', '"soon"', 'env VECTOR_STORE_CONNECTION_LIFETIME');
    const minMax = configError(() => loadConfig({ file, env: { VECTOR_STORE_MIN_CONNECTIONS: '5' } }));
    expectNames(minMax, 'pools.vectors.min_size', '"5"', 'env VECTOR_STORE_MIN_CONNECTIONS');
    expect(minMax.message).to.contain('min_size (5) must be <= max_size (4)');
  });

  it('driver options: defaults, strings from the environment, and errors naming the option', () => {
    const s = parseSettings({}, 'w', {});
    expect(s).to.deep.include({ httpHost: 'localhost', httpPort: 8080, httpSecure: false, grpcPort: 50051, grpcSecure: false, usePool: true, initTimeoutMs: 2000, queryTimeoutMs: 30_000, insertTimeoutMs: 90_000, healthCheckIntervalMs: 60_000, skipInitChecks: false, headers: {} });
    expect(parseSettings({ port: '9000', use_pool: 'off', secure: 'yes', health_check_interval: 0 }, 'w', {})).to.include({ httpPort: 9000, usePool: false, httpSecure: true, grpcSecure: true, healthCheckIntervalMs: 0 });
    expect(parseSettings({ api_key_env: 'MY_KEY' }, 'w', { MY_KEY: 'k1' }).apiKey).to.equal('k1');
    const bad = (o: Record<string, unknown>, key: string, why: string) => {
      const err = configError(() => parseSettings(o, 'w', {}));
      expect(err.key).to.equal(`pools.w.options.${key}`);
      expect(err.message).to.contain(why);
    };
    bad({ hots: 'x' }, 'hots', 'unknown weaviate option');
    bad({ port: 0 }, 'port', 'port number');
    bad({ host: 'http://x:8080' }, 'host', 'without scheme or port');
    bad({ use_pool: 'perhaps' }, 'use_pool', 'true or false');
    bad({ init_timeout: 'fast' }, 'init_timeout', 'duration');
    bad({ api_key_env: 'NOPE' }, 'api_key_env', 'not set');
    bad({ headers: ['x'] }, 'headers', 'mapping');
    const secret = configError(() => parseSettings({ api_key: 42 }, 'w', {}));
    expect(secret.message).to.not.contain('42');
  });
});
