import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as natsConnect, type NatsConnection, type StreamInfo } from 'nats';
import { connect, type Client } from '@shoal/client';
import { openBucket } from '@shoal/runtime';
import { AUTOSCALER_LEADER_BUCKET, encode, PROTOCOL_VERSION, readReply, SETTINGS_BUCKET, subjects } from '@shoal/protocol';
import { freePort, startNatsCluster, startNatsServer, type NatsCluster, type NatsServer } from '../helpers/nats-server.js';
import { eventually, ROOT, runShoal, startPoolNode, startService, type Service } from '../helpers/procs.js';
import { startSecureNats, type SecureNats } from '../helpers/roles.js';

/**
 * The `jetstream` config section applies to every KV bucket Shoal creates,
 * whichever service creates it: the settings bucket (here created by an
 * autoscaler or a health-checker, no balancer running), the autoscalers'
 * leader bucket, the nodes' `shoal_turns` (claude-cli account cap) and
 * `shoal_parked` (parked conversations). On a 3-server cluster, with nothing
 * configured, each gets 3 replicas; `jetstream.storage: memory` and
 * SHOAL_JETSTREAM_REPLICAS apply to all of them; and the server holding the
 * leader bucket's stream leader can die without stopping leader election.
 */
const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');
const BUCKETS = [SETTINGS_BUCKET, AUTOSCALER_LEADER_BUCKET, 'shoal_turns', 'shoal_parked'];
const s = subjects('shoal');

/** A config with one claude-cli pool (stand-in CLI) whose account cap and parking open `shoal_turns` and `shoal_parked`. */
function claudeConfig(dir: string, extra: Record<string, unknown> = {}): string {
  const file = join(dir, 'shoal.yaml');
  writeFileSync(file, JSON.stringify({
    ...extra,
    node: { heartbeat_interval: '200ms', drain_grace: '1s' },
    autoscaler: { lease_ttl: '1s', interval: '200ms' },
    health_check: { interval: '500ms' },
    pools: {
      claude: {
        driver: 'claude-cli', min_size: 1, max_size: 1, initial_size: 1, acquire_timeout: '15s',
        resource_limits: { max_memory_per_session: '1GB', max_total_memory: '8GB' },
        create: { timeout: '15s' },
        session_management: { max_parked: 2 },
        auto_scaling: { enabled: false },
        options: { command: STAND_IN, cwd_root: join(dir, 'work'), stop_grace: '300ms', stop_kill_after: '700ms', account: { key: 'team-a', max_concurrent_turns: 1 } },
      },
    },
  }));
  return file;
}

/**
 * A pool-node, an autoscaler and a health-checker (on servers `urls[0..2]`),
 * and one parked turn: every bucket opened. Returns the processes and a client.
 */
async function startAll(procs: Service[], urls: string[], config: string, env: Record<string, string> = {}, seed?: (role: string) => string): Promise<Client> {
  const common = { SHOAL_CONFIG: config, SHOAL_LOG_LEVEL: 'info', ...env };
  const as = (role: string): Record<string, string> => (seed ? { SHOAL_NATS_NKEY_SEED_FILE: seed(role) } : {});
  const node = await startPoolNode({ ...common, ...as('pool-node'), SHOAL_NATS_URL: urls[0]!, SHOAL_NODE_ID: 'n1' });
  procs.push(node);
  const autoscaler = startService('services/autoscaler/dist/main.js', { ...common, ...as('autoscaler'), SHOAL_NATS_URL: urls[1]!, SHOAL_HTTP_PORT: '-1', SHOAL_AUTOSCALER_ID: 'as-1' });
  const checker = startService('services/health-checker/dist/main.js', { ...common, ...as('health-checker'), SHOAL_NATS_URL: urls[2]!, SHOAL_HTTP_PORT: '-1', SHOAL_HEALTH_CHECKER_ID: 'hc-1' });
  procs.push(autoscaler, checker);
  await autoscaler.waitFor((l) => l.msg === 'elected leader', 30_000);
  const client = await connect({ servers: urls, name: 'it', ...(seed ? { nats: { nkeySeedFile: seed('client') } } : {}) });
  // A one-shot turn (account cap: a slot in shoal_turns) parked under a key (its session recorded in shoal_parked).
  const r = await client.exec('claude', 'send', { content: 'hello' }, { nodeId: node.nodeId, park: 'conv-1', timeoutMs: 20_000 }) as { subtype?: string };
  expect(r.subtype).to.equal('success');
  return client;
}

/** Every `shoal_*` bucket's stream, by bucket name, once all of BUCKETS exist (the parked record is written after the reply). */
async function bucketStreams(nc: NatsConnection, domain?: string): Promise<Map<string, StreamInfo>> {
  const jsm = await nc.jetstreamManager(domain ? { domain } : {});
  return eventually('every bucket created', async () => {
    const out = new Map<string, StreamInfo>();
    for await (const si of jsm.streams.list()) if (si.config.name.startsWith('KV_shoal_')) out.set(si.config.name.slice(3), si);
    return BUCKETS.every((b) => out.has(b)) ? out : false;
  }, 20_000, 200);
}

const shapes = (all: Map<string, StreamInfo>) => Object.fromEntries([...all].map(([b, si]) => [b, { replicas: si.config.num_replicas, storage: si.config.storage }]));
const every = (all: Map<string, StreamInfo>, shape: { replicas: number; storage: string }) => Object.fromEntries([...all.keys()].map((b) => [b, shape]));

describe('jetstream.* on every bucket (3-server NATS cluster; pool-node, autoscaler, health-checker as OS processes)', function () {
  this.timeout(60_000);
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let client: Client | undefined;
  let dir: string;
  const procs: Service[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-js-buckets-'));
    mkdirSync(join(dir, 'work'));
    cluster = await startNatsCluster(3);
    nc = await natsConnect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    // The cluster formed (every server gossiped) and JetStream has a meta leader: what openBucket's default counts on.
    await eventually('a formed cluster with JetStream', async () => {
      const urls = (nc.info as { connect_urls?: string[] } | undefined)?.connect_urls ?? [];
      if (urls.length < 3) return false;
      await (await nc.jetstreamManager()).getAccountInfo();
      return true;
    }, 20_000, 100);
  });
  afterEach(async () => {
    await client?.close().catch(() => {});
    client = undefined;
    await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
    await nc?.close().catch(() => {});
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('with nothing configured, every shoal_* bucket (settings created by an autoscaler or health-checker, leader, turns, parked) has 3 replicas on file storage', async () => {
    client = await startAll(procs, cluster.urls, claudeConfig(dir));
    const all = await bucketStreams(nc);
    expect(shapes(all)).to.deep.equal(every(all, { replicas: 3, storage: 'file' }));
    expect([...all.keys()]).to.include.members(BUCKETS);
    // The lease is still the leader bucket's max_age.
    expect(all.get(AUTOSCALER_LEADER_BUCKET)!.config.max_age).to.equal(1000 * 1e6);
  });

  it('jetstream.storage: memory (file) and SHOAL_JETSTREAM_REPLICAS=2 (env) apply to every shoal_* bucket', async () => {
    client = await startAll(procs, cluster.urls, claudeConfig(dir, { jetstream: { storage: 'memory' } }), { SHOAL_JETSTREAM_REPLICAS: '2' });
    const all = await bucketStreams(nc);
    expect(shapes(all)).to.deep.equal(every(all, { replicas: 2, storage: 'memory' }));
  });

  it('the server holding the leader bucket\'s stream leader SIGKILLed: an autoscaler leads again (renews or is elected) within JetStream failover + the lease', async () => {
    // Two autoscalers on different servers, the default synthetic pool.
    const env = { SHOAL_LOG_LEVEL: 'info', SHOAL_HTTP_PORT: '-1', SHOAL_AUTOSCALER_LEASE_TTL: '1s', SHOAL_AUTOSCALER_INTERVAL: '200ms' };
    const a1 = startService('services/autoscaler/dist/main.js', { ...env, SHOAL_NATS_URL: cluster.urls[0]!, SHOAL_AUTOSCALER_ID: 'as-1' });
    const a2 = startService('services/autoscaler/dist/main.js', { ...env, SHOAL_NATS_URL: cluster.urls[1]!, SHOAL_AUTOSCALER_ID: 'as-2' });
    procs.push(a1, a2);
    await Promise.race([a1.waitFor((l) => l.msg === 'elected leader', 30_000), a2.waitFor((l) => l.msg === 'elected leader', 30_000)]);
    const jsm = await nc.jetstreamManager();
    // (Its replicas are the first test's concern: this one is about what they are for.)
    const si = await jsm.streams.info(`KV_${AUTOSCALER_LEADER_BUCKET}`);
    const victim = cluster.servers.findIndex((x) => x.name === si.cluster?.leader);
    expect(victim, `stream leader ${si.cluster?.leader}`).to.be.at.least(0);
    const kv = await nc.jetstream().views.kv(AUTOSCALER_LEADER_BUCKET, { bindOnly: true });
    const before = (await kv.get('leader'))!.revision;

    await cluster.kill(victim);
    const killedAt = Date.now();
    // JetStream elects a new stream leader (seconds), then the lease is renewed or, once expired (1 s), taken: the
    // leader key is written again, and the leader answers the status subject. With one replica on the dead
    // server neither ever happens. The bound means "it did not hang".
    const BOUND_MS = 20_000;
    await eventually('the leader key written after the kill', async () => ((await kv.get('leader'))?.revision ?? 0) > before, BOUND_MS, 200);
    const status = await eventually('an autoscaler leading (answers status)', async () => {
      const m = await nc.request(s.autoscalerStatus, encode({ v: PROTOCOL_VERSION }), { timeout: 1000 });
      return m.data.length > 0 ? m : false;
    }, BOUND_MS - (Date.now() - killedAt), 200);
    expect(status.data.length).to.be.greaterThan(0);
    // And it keeps it: renewals go on (the revision moves again).
    const rev = (await kv.get('leader'))!.revision;
    await eventually('a renewal after that', async () => ((await kv.get('leader'))?.revision ?? 0) > rev, 10_000, 200);
    if (process.env.SHOAL_TEST_FIGURES) console.log(JSON.stringify({ killed: si.cluster?.leader, leadingAgainMs: Date.now() - killedAt }));
  });
});

describe('jetstream.domain on every bucket (a leaf server with its own JetStream, the buckets in the hub\'s domain)', function () {
  this.timeout(60_000);
  let hub: NatsServer;
  let leaf: NatsServer;
  let nc: NatsConnection;
  let client: Client | undefined;
  let dir: string;
  const procs: Service[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-js-domain-'));
    mkdirSync(join(dir, 'work'));
    const leafPort = await freePort();
    hub = await startNatsServer({ domain: 'hub', conf: `leafnodes { listen: "127.0.0.1:${leafPort}" }` });
    // The leaf's own JetStream answers the plain API (`$JS.API`): only the domain reaches the hub's.
    leaf = await startNatsServer({ domain: 'leaf', conf: `leafnodes { remotes: [ { url: "nats-leaf://127.0.0.1:${leafPort}" } ] }` });
    nc = await natsConnect({ servers: leaf.url });
    await eventually('the hub reached through the leaf', async () => (await (await nc.jetstreamManager({ domain: 'hub' })).getAccountInfo()).domain === 'hub', 20_000, 100);
  });
  after(async () => {
    await client?.close().catch(() => {});
    await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
    await nc?.close().catch(() => {});
    await Promise.all([leaf?.stop(), hub?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('SHOAL_JETSTREAM_DOMAIN=hub: pool-node, autoscaler and health-checker on the leaf create every shoal_* bucket in the hub, none in the leaf', async () => {
    client = await startAll(procs, [leaf.url, leaf.url, leaf.url], claudeConfig(dir), { SHOAL_JETSTREAM_DOMAIN: 'hub' });
    const inHub = await bucketStreams(nc, 'hub');
    expect([...inHub.keys()]).to.include.members(BUCKETS);
    const inLeaf: string[] = [];
    for await (const si of (await nc.jetstreamManager()).streams.list()) inLeaf.push(si.config.name);
    expect(inLeaf.filter((n) => n.startsWith('KV_shoal_'))).to.deep.equal([]);
  });
});

describe('jetstream.domain with roles on (`shoal creds --domain`): a leaf server with roles, the buckets in the hub\'s domain', function () {
  this.timeout(60_000);
  let hub: NatsServer;
  let sec: SecureNats;
  let admin: NatsConnection;
  let client: Client | undefined;
  let dir: string;
  const procs: Service[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-js-roles-'));
    mkdirSync(join(dir, 'work'));
    const leafPort = await freePort();
    hub = await startNatsServer({ domain: 'hub', conf: `leafnodes { listen: "127.0.0.1:${leafPort}" }` });
    // The leaf checks the services' keys (the table of roles.ts for the domain `hub`) on the subjects as sent.
    sec = await startSecureNats('shoal', { domain: 'hub', server: { domain: 'leaf', conf: `leafnodes { remotes: [ { url: "nats-leaf://127.0.0.1:${leafPort}" } ] }` } });
    admin = await sec.connectAs('admin');
    await eventually('the hub reached through the leaf', async () => (await (await admin.jetstreamManager({ domain: 'hub' })).getAccountInfo()).domain === 'hub', 20_000, 100);
  });
  after(async () => {
    await client?.close().catch(() => {});
    await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
    await admin?.close().catch(() => {});
    await sec?.stop();
    await hub?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  it('`shoal creds --domain hub` writes that table (SHOAL_JETSTREAM_DOMAIN too); a bad domain is a usage error', async () => {
    const out = join(dir, 'creds');
    for (const [args, env] of [[['--domain', 'hub'], {}], [[], { SHOAL_JETSTREAM_DOMAIN: 'hub' }]] as const) {
      rmSync(out, { recursive: true, force: true });
      const r = await runShoal(['creds', '--dir', out, ...args], env);
      expect(r.code, r.stderr).to.equal(0);
      const conf = readFileSync(join(out, 'nats-auth.conf'), 'utf8');
      expect(conf).to.contain('"$JS.hub.API.STREAM.CREATE.KV_shoal_autoscaler_leader"');
      expect(conf).to.contain('"$JS.hub.API.$KV.shoal_settings.target.>"');
    }
    const bad = await runShoal(['creds', '--dir', out, '--domain', 'a.b']);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/--domain/);
  });

  it('every service creates and uses its buckets in the domain with its own key; a balancer watches the settings there', async () => {
    const url = sec.nats.url;
    client = await startAll(procs, [url, url, url], claudeConfig(dir), { SHOAL_JETSTREAM_DOMAIN: 'hub' }, (role) => sec.seed(role));
    const all = await bucketStreams(admin, 'hub');
    expect([...all.keys()]).to.include.members(BUCKETS);
    // The settings as the services wrote them: the epoch (autoscaler) and a verdict of n1 (health-checker).
    const kv = await admin.jetstream({ domain: 'hub' }).views.kv(SETTINGS_BUCKET, { bindOnly: true });
    expect(Number(new TextDecoder().decode((await kv.get('autoscaler.epoch'))!.value))).to.be.at.least(1);
    await eventually('the health-checker\'s verdict stored', async () => (await kv.get('health.n1'))?.operation === 'PUT', 20_000, 200);
    const b = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: url, SHOAL_HTTP_PORT: '-1', SHOAL_BALANCER_ID: 'b1', SHOAL_JETSTREAM_DOMAIN: 'hub', SHOAL_NATS_NKEY_SEED_FILE: sec.seed('balancer'), SHOAL_CONFIG: claudeConfig(dir) });
    procs.push(b);
    await b.waitFor((l) => l.msg === 'listening', 30_000);
    const st = readReply<{ settings: { watched: boolean } }>((await admin.request(s.adminStatusOf('b1'), encode({ v: PROTOCOL_VERSION }), { timeout: 5000 })).data);
    expect(st.settings.watched).to.equal(true);
    // No service was refused anything on the way.
    for (const p of procs) expect(p.logs.filter((l) => /permission|authorization/i.test(JSON.stringify(l))), JSON.stringify(p.logs.slice(-3))).to.deep.equal([]);

    // A changed lease (autoscaler.lease_ttl) is brought to the leader bucket by the autoscaler's own key (its bucket, its stream update).
    const asNc = await sec.connectAs('autoscaler');
    try {
      await openBucket(asNc, AUTOSCALER_LEADER_BUCKET, { domain: 'hub', ttlMs: 3000 });
      expect((await (await admin.jetstreamManager({ domain: 'hub' })).streams.info(`KV_${AUTOSCALER_LEADER_BUCKET}`)).config.max_age).to.equal(3000 * 1e6);
    } finally {
      await asNc.close();
    }
  });
});
