import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { connectNats, natsOptions } from '@shoal/runtime';
import { freePort, natsServerBin } from '../helpers/nats-server.js';

/** A nats-server that demands credentials: Shoal's connection settings must get through it. */
async function securedServer(args: string[]): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(natsServerBin(), ['-a', '127.0.0.1', '-p', String(port), ...args], { stdio: 'ignore' });
  const up = () => new Promise<boolean>((r) => { const s = netConnect({ port, host: '127.0.0.1' }); s.once('connect', () => { s.destroy(); r(true); }); s.once('error', () => r(false)); });
  for (let i = 0; i < 200 && !(await up()); i++) await new Promise((r) => setTimeout(r, 25));
  return { url: `nats://127.0.0.1:${port}`, proc };
}

describe('runtime NATS connection (real nats-server with auth)', function () {
  this.timeout(15_000);
  const procs: ChildProcess[] = [];
  after(() => { for (const p of procs) p.kill('SIGKILL'); });

  it('connects with user and password, and is refused with a wrong password', async () => {
    const srv = await securedServer(['--user', 'shoal', '--pass', 's3cret']);
    procs.push(srv.proc);
    const nc = await connectNats({ servers: [srv.url], user: 'shoal', pass: 's3cret', waitOnFirstConnect: false });
    expect(nc.info?.auth_required).to.equal(true);
    await nc.close();
    const err = await connectNats({ servers: [srv.url], user: 'shoal', pass: 'wrong', waitOnFirstConnect: false }).then(() => null, (e: Error) => e);
    expect(String(err)).to.match(/authorization/i);
  });

  it('connects with a token', async () => {
    const srv = await securedServer(['--auth', 'tok-123']);
    procs.push(srv.proc);
    const nc = await connectNats({ servers: [srv.url], token: 'tok-123', waitOnFirstConnect: false });
    await nc.flush();
    await nc.close();
  });

  it('builds options that reconnect forever, skip async traces, and set TLS files only when given', () => {
    const o = natsOptions({ servers: ['nats://a:4222'], tls: { caFile: '/ca.pem' } });
    expect(o).to.include({ maxReconnectAttempts: -1, noAsyncTraces: true, waitOnFirstConnect: true });
    expect(o.tls).to.deep.equal({ caFile: '/ca.pem' });
    expect(natsOptions({ servers: ['nats://a:4222'] }).tls).to.equal(undefined);
  });
});
