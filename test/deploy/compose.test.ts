/**
 * The compose cluster, for real: the image built by scripts/test-deploy.sh,
 * docker-compose.yml with the Weaviate stand-in override, run by podman-compose.
 * From outside the containers: acquire and exec on the synthetic pool, a
 * Weaviate query, pool-node-synthetic scaled 1 → 3 (leases on all three) and
 * back to 1 (the removed replicas drain: exit 0, no lease lost), and `down`
 * leaves nothing of the project behind.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { connect, type Client, type Lease } from '@shoal/client';
import { eventually as until, ROOT } from '../helpers/procs.js';
import { freePort } from '../helpers/nats-server.js';

const run = promisify(execFile);
const PROJECT = `shoaltest${process.pid}`;
const IMAGE = process.env.SHOAL_TEST_IMAGE ?? 'localhost/shoal:test';
const FILES = ['-f', 'docker-compose.yml', '-f', 'deploy/compose/standin.yml'];
const SHOAL_SERVICES = ['balancer', 'autoscaler', 'health-checker', 'pool-node-synthetic', 'pool-node-weaviate', 'pool-node-claude'];
// podman-compose 1.0.3 ignores profiles: name the services to start (Prometheus and Grafana are left out).
const SERVICES = ['nats', 'weaviate', ...SHOAL_SERVICES];



describe('docker-compose cluster (podman-compose)', function () {
  this.timeout(600_000);
  let env: NodeJS.ProcessEnv;
  let client: Client | undefined;
  // Roles on, as the compose file runs NATS: the role seeds and nats-server auth config, made by `shoal creds`.
  const creds = mkdtempSync(join(tmpdir(), 'shoal-compose-creds-'));

  const compose = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    run('podman-compose', ['-p', PROJECT, ...FILES, ...args], { cwd: ROOT, env: { ...env, ...extra }, maxBuffer: 64 << 20 });
  const podman = async (...args: string[]) => (await run('podman', args, { maxBuffer: 64 << 20 })).stdout.trim();
  const containers = async (service?: string) => (await podman('ps', '-a', '--format', '{{.Names}}', '--filter', `label=io.podman.compose.project=${PROJECT}`,
    ...(service ? ['--filter', `label=com.docker.compose.service=${service}`] : []))).split('\n').filter(Boolean).sort();

  before(async () => {
    const natsPort = await freePort();
    // The image runs as `node` (uid 1000): the secrets mounted from these files must be its own.
    await run(process.execPath, [join(ROOT, 'bin/shoal.js'), 'creds', '--dir', creds, '--owner', '1000:1000']);
    env = {
      ...process.env,
      SHOAL_IMAGE: IMAGE,
      SHOAL_NATS_PORT: String(natsPort),
      SHOAL_NATS_MONITOR_PORT: String(await freePort()),
      SHOAL_SYNTHETIC_NODES: '1',
      SHOAL_CREDS_DIR: creds,
      SHOAL_LOG_LEVEL: 'info',
    };
    await compose(['up', '-d', '--no-build', ...SERVICES]);
    client = await until('NATS from the host', () => connect({ servers: [`nats://127.0.0.1:${natsPort}`], name: 'compose-test', timeoutMs: 5000, nats: { nkeySeedFile: join(creds, 'client.nk') } }), 60_000);
  });

  after(async () => {
    await client?.close().catch(() => {});
    if (env) await compose(['down', '-v']).catch(() => {});
    // podman-compose 1.0.3 leaves the project's network behind after `down`: remove it here.
    await podman('network', 'rm', '-f', `${PROJECT}_default`).catch(() => {});
    rmSync(creds, { recursive: true, force: true });
  });

  it('every service starts and its HEALTHCHECK passes', async () => {
    const names = await containers();
    for (const s of SHOAL_SERVICES) expect(names.some((n) => n.startsWith(`${PROJECT}_${s}_`)), s).to.equal(true);
    // Podman runs HEALTHCHECKs from systemd timers, absent here: run each container's own check.
    for (const name of names.filter((n) => SHOAL_SERVICES.some((s) => n.startsWith(`${PROJECT}_${s}_`)))) {
      await until(`${name} healthy`, async () => (await run('podman', ['healthcheck', 'run', name]).then(() => true, () => false)), 120_000);
    }
  });

  it('acquires and execs on the synthetic pool and queries Weaviate from outside the containers', async () => {
    const c = client!;
    const lease = await until('a synthetic lease', () => c.acquire('synthetic', { timeoutMs: 5000 }), 60_000);
    expect(await lease.exec('echo', { hello: 'compose' })).to.deep.equal({ hello: 'compose' });
    await lease.release();
    expect(await c.exec('synthetic', 'echo', { one: 'shot' }, { timeoutMs: 5000 })).to.deep.equal({ one: 'shot' });
    const collection = `Compose${process.pid}`;
    await until('weaviate pool ready', () => c.exec('weaviate', 'collections.listAll', {}, { timeoutMs: 5000 }).result, 60_000);
    expect(await c.exec('weaviate', 'collections.create', { name: collection, properties: [{ name: 'title', dataType: 'text' }] })).to.equal(collection);
    await c.exec('weaviate', 'data.insertMany', { collection, objects: [{ properties: { title: 'shoal' }, vectors: [0.1, 0.2, 0.3] }] });
    const got = await c.exec('weaviate', 'query.fetchObjects', { collection, limit: 5 }) as { objects: { properties: { title: string } }[] };
    expect(got.objects.map((o) => o.properties.title)).to.deep.equal(['shoal']);
  });

  it('scales pool-node-synthetic 1 → 3: the balancers place leases on all three', async () => {
    await compose(['up', '-d', '--no-build', 'pool-node-synthetic'], { SHOAL_SYNTHETIC_NODES: '3' });
    expect(await containers('pool-node-synthetic')).to.have.length(3);
    const c = client!;
    const nodes = await until('leases on 3 nodes', async () => {
      const held: Lease[] = [];
      try {
        for (let i = 0; i < 12; i++) held.push(await c.acquire('synthetic', { timeoutMs: 5000 }));
        const ids = new Set(held.map((l) => l.nodeId));
        return ids.size === 3 ? ids : undefined;
      } finally {
        await Promise.all(held.map((l) => l.release()));
      }
    }, 90_000);
    expect(nodes.size).to.equal(3);
  });

  it('scales back to 1: the removed replicas drain (exit 0) and a lease held on one is released, not lost', async () => {
    const c = client!;
    const names = await containers('pool-node-synthetic');
    const removed = names.slice(1);
    // A lease on a replica about to go: acquire until one lands there.
    const nodeOf = async (name: string) => JSON.parse(await podman('logs', name).then((l) => l.split('\n').find((x) => x.includes('"msg":"listening"'))!)).nodeId as string;
    const removedIds = await Promise.all(removed.map(nodeOf));
    const lease = await c.acquire('synthetic', { timeoutMs: 5000, nodeId: removedIds[0] });
    // podman-compose 1.0.3 does not stop surplus replicas: stop them as compose --scale would (SIGTERM, then wait).
    const stopping = Promise.all(removed.map((n) => podman('stop', '-t', '60', n)));
    // While draining the node refuses new work but keeps the lease: the holder finishes and releases.
    await until('drain under way', async () => (await c.acquire('synthetic', { timeoutMs: 2000, nodeId: removedIds[0] }).then(async (l) => { await l.release(); return false; }, (e: { code?: string }) => e.code === 'NODE_DRAINING' || e.code === 'NO_RESPONDERS')), 30_000);
    expect(await lease.exec('echo', { still: 'mine' })).to.deep.equal({ still: 'mine' });
    await lease.release();
    expect(lease.lost).to.equal(undefined);
    await stopping;
    for (const n of removed) expect(await podman('inspect', '--format', '{{.State.ExitCode}}', n), n).to.equal('0');
    await podman('rm', ...removed);
    expect(await containers('pool-node-synthetic')).to.have.length(1);
    // The cluster still serves.
    expect(await c.exec('synthetic', 'echo', { after: 'scale-down' }, { timeoutMs: 5000 })).to.deep.equal({ after: 'scale-down' });
  });

  it('down leaves no container or volume of the project behind', async () => {
    await client?.close();
    client = undefined;
    await compose(['down', '-v']);
    expect(await containers()).to.deep.equal([]);
    const volumes = (await podman('volume', 'ls', '--format', '{{.Name}}')).split('\n').filter((v) => v.startsWith(`${PROJECT}_`));
    expect(volumes).to.deep.equal([]);
  });
});
