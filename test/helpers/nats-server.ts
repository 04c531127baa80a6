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
export async function startNatsServer(opts: { jetstream?: boolean; maxPayload?: number; port?: number; /** Extra nats-server config text (authorization, tls...). */ conf?: string } = {}): Promise<NatsServer> {
  const bin = natsServerBin();
  const port = opts.port ?? await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'shoal-nats-'));
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (opts.jetstream !== false) args.push('-js', '-sd', dir);
  if (opts.maxPayload || opts.conf) {
    const conf = join(dir, 'server.conf');
    writeFileSync(conf, `${opts.maxPayload ? `max_payload: ${opts.maxPayload}\n` : ''}${opts.conf ?? ''}\n`);
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
