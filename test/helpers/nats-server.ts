import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';

/** A free TCP port on loopback, as the OS hands it out. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export interface NatsServer {
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** The nats-server binary: SHOAL_NATS_SERVER, else PATH, else the sbin directories (Debian installs it in /usr/sbin). */
export function natsServerBin(): string {
  if (process.env.SHOAL_NATS_SERVER) return process.env.SHOAL_NATS_SERVER;
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    const p = join(d, 'nats-server');
    if (d && existsSync(p)) return p;
  }
  return 'nats-server';
}

/** Start a real nats-server (Debian package) with JetStream (in a new, empty store directory) on a free loopback port, or on `port`. */
export async function startNatsServer(opts: { jetstream?: boolean; maxPayload?: number; port?: number; /** JetStream domain of this server. */ domain?: string; /** Extra nats-server config text (authorization, tls...). */ conf?: string } = {}): Promise<NatsServer> {
  const bin = natsServerBin();
  const port = opts.port ?? await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'shoal-nats-'));
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (opts.jetstream !== false && !opts.domain) args.push('-js', '-sd', dir);
  if (opts.maxPayload || opts.domain || opts.conf) {
    const conf = join(dir, 'server.conf');
    writeFileSync(conf, [
      opts.maxPayload ? `max_payload: ${opts.maxPayload}` : '',
      opts.domain ? `jetstream { store_dir: "${join(dir, 'js')}", domain: ${opts.domain} }` : '',
      opts.conf ?? '',
    ].join('\n') + '\n');
    args.push('-c', conf);
  }
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => { stderr += d; });
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`nats-server did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    proc,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface NatsClusterServer {
  name: string;
  url: string;
  port: number;
  proc: ChildProcess | undefined;
}

export interface NatsCluster {
  servers: NatsClusterServer[];
  /** Every server's client URL. */
  urls: string[];
  /** SIGKILL one server (its store stays, as on a machine that died). */
  kill(i: number): Promise<void>;
  /** Start a killed server again with its store. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `n` nats-servers with JetStream, routed to each other on loopback (one
 * cluster, each with its own store directory), all reachable before this
 * resolves. JetStream needs a meta leader before a stream can be created:
 * callers should retry their first JetStream request for a few seconds.
 */
export async function startNatsCluster(n = 3, opts: { domain?: string } = {}): Promise<NatsCluster> {
  const bin = natsServerBin();
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  const routePorts = await Promise.all(Array.from({ length: n }, () => freePort()));
  const root = mkdtempSync(join(tmpdir(), 'shoal-nats-cluster-'));
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`);
  const servers: NatsClusterServer[] = ports.map((port, i) => ({ name: `s${i + 1}`, url: `nats://127.0.0.1:${port}`, port, proc: undefined }));
  const confs = servers.map((s, i) => {
    const conf = join(root, `${s.name}.conf`);
    writeFileSync(conf, [
      `server_name: ${s.name}`,
      `listen: 127.0.0.1:${s.port}`,
      `jetstream { store_dir: "${join(root, s.name)}"${opts.domain ? `, domain: ${opts.domain}` : ''} }`,
      `cluster { name: shoal_test, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes.filter((_, k) => k !== i).join(', ')}] }`,
    ].join('\n') + '\n');
    return conf;
  });
  const launch = async (i: number) => {
    const proc = spawn(bin, ['-c', confs[i]!], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d) => { stderr += d; });
    servers[i]!.proc = proc;
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(servers[i]!.port))) {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`nats-server ${servers[i]!.name} did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const stopOne = async (i: number, signal: NodeJS.Signals) => {
    const proc = servers[i]!.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill(signal);
      await exited;
    }
    servers[i]!.proc = undefined;
  };
  await Promise.all(servers.map((_, i) => launch(i)));
  return {
    servers,
    urls: servers.map((s) => s.url),
    kill: (i) => stopOne(i, 'SIGKILL'),
    restart: (i) => launch(i),
    async stop() {
      await Promise.all(servers.map((_, i) => stopOne(i, 'SIGTERM')));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
