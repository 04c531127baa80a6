import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAccount, createOperator, createUser } from 'nkeys.js';
import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from 'nats-jwt';
import { subjects } from '@shoal/protocol';
import { call, connectNats, natsOptions, type NatsSettings } from '@shoal/runtime';
import { freePort, natsServerBin } from '../helpers/nats-server.js';
import { startPoolNode, type Service } from '../helpers/procs.js';
import { writeConfig } from '../helpers/cluster.js';

/**
 * Shoal's NATS connection settings against a real nats-server that demands
 * them: user/password, token, NKey, JWT credentials (operator mode, memory
 * resolver) and TLS with a client certificate (certificates made here with
 * openssl). Each accepted kind is also proven end to end: a pool-node process
 * configured only by its SHOAL_NATS_* variables connects and answers.
 */
const s = subjects('shoal');

/** A nats-server on a free port with `conf` as its config file (or plain `args`). */
async function securedServer(dir: string, opts: { conf?: string; args?: string[]; scheme?: string }): Promise<{ url: string; proc: ChildProcess; stderr: () => string }> {
  const port = await freePort();
  const args = ['-a', '127.0.0.1', '-p', String(port), ...(opts.args ?? [])];
  if (opts.conf !== undefined) {
    const file = join(dir, `server-${port}.conf`);
    writeFileSync(file, opts.conf);
    args.push('-c', file);
  }
  const proc = spawn(natsServerBin(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => { err += d; });
  const up = () => new Promise<boolean>((r) => { const c = netConnect({ port, host: '127.0.0.1' }); c.once('connect', () => { c.destroy(); r(true); }); c.once('error', () => r(false)); });
  const end = Date.now() + 10_000;
  while (!(await up())) {
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`nats-server did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url: `${opts.scheme ?? 'nats'}://127.0.0.1:${port}`, proc, stderr: () => err };
}

describe('runtime NATS connection (real nats-server with auth and TLS)', function () {
  this.timeout(30_000);
  const procs: ChildProcess[] = [];
  const nodes: Service[] = [];
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'shoal-nats-auth-')); });
  afterEach(async () => { await Promise.all(nodes.splice(0).map((n) => n.kill('SIGKILL'))); });
  after(() => {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const file = (name: string, content: string | Uint8Array) => { const f = join(dir, name); writeFileSync(f, content); return f; };

  /** Refused: the connect fails (never hangs: a client does not wait on its first connect). */
  async function refused(settings: NatsSettings): Promise<string> {
    const r = await connectNats({ ...settings, waitOnFirstConnect: false }).then(async (nc) => { await nc.close(); return null; }, (e: Error) => e);
    expect(r, 'connect should have been refused').to.be.instanceOf(Error);
    return String(r);
  }

  /** A pool-node configured by these SHOAL_NATS_* variables connects and answers its status over that connection. */
  async function nodeConnects(url: string, env: Record<string, string>, clientSettings: Omit<NatsSettings, 'servers'>): Promise<void> {
    const n = await startPoolNode({ SHOAL_NATS_URL: url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 1, initial_size: 1 }), ...env });
    nodes.push(n);
    const nc = await connectNats({ servers: [url], ...clientSettings, waitOnFirstConnect: false });
    try {
      const st = await call<{ nodeId: string; pools: Record<string, { total: number }> }>(nc, s.nodeStatus(n.nodeId), {}, 5000);
      expect(st.nodeId).to.equal(n.nodeId);
      expect(st.pools.synthetic!.total).to.equal(1);
    } finally {
      await nc.close();
    }
  }

  it('connects with user and password, and is refused with a wrong password', async () => {
    const srv = await securedServer(dir, { args: ['--user', 'shoal', '--pass', 's3cret'] });
    procs.push(srv.proc);
    const nc = await connectNats({ servers: [srv.url], user: 'shoal', pass: 's3cret', waitOnFirstConnect: false });
    expect(nc.info?.auth_required).to.equal(true);
    await nc.close();
    expect(await refused({ servers: [srv.url], user: 'shoal', pass: 'wrong' })).to.match(/authorization/i);
    await nodeConnects(srv.url, { SHOAL_NATS_USER: 'shoal', SHOAL_NATS_PASS: 's3cret' }, { user: 'shoal', pass: 's3cret' });
  });

  it('connects with a token, and is refused with a wrong one or none', async () => {
    const srv = await securedServer(dir, { args: ['--auth', 'tok-123'] });
    procs.push(srv.proc);
    const nc = await connectNats({ servers: [srv.url], token: 'tok-123', waitOnFirstConnect: false });
    expect(nc.info?.auth_required).to.equal(true);
    await nc.flush();
    await nc.close();
    expect(await refused({ servers: [srv.url], token: 'tok-999' })).to.match(/authorization/i);
    expect(await refused({ servers: [srv.url] })).to.match(/authorization/i);
    await nodeConnects(srv.url, { SHOAL_NATS_TOKEN: 'tok-123' }, { token: 'tok-123' });
  });

  it('connects with an NKey seed file, and is refused with another key\'s seed', async () => {
    const user = createUser();
    const srv = await securedServer(dir, { conf: `authorization { users = [ { nkey: "${user.getPublicKey()}" } ] }\n` });
    procs.push(srv.proc);
    const seedFile = file('user.nk', new TextDecoder().decode(user.getSeed()) + '\n');
    const nc = await connectNats({ servers: [srv.url], nkeySeedFile: seedFile, waitOnFirstConnect: false });
    expect(nc.info?.auth_required).to.equal(true);
    await nc.close();
    const stranger = file('stranger.nk', new TextDecoder().decode(createUser().getSeed()));
    expect(await refused({ servers: [srv.url], nkeySeedFile: stranger })).to.match(/authorization/i);
    await nodeConnects(srv.url, { SHOAL_NATS_NKEY_SEED_FILE: seedFile }, { nkeySeedFile: seedFile });
  });

  it('connects with a JWT credentials file (operator mode), and is refused with a user of an unknown account', async () => {
    const operator = createOperator();
    const account = createAccount();
    const user = createUser();
    const operatorJwt = await encodeOperator('shoal-op', operator);
    // nats-jwt leaves an account's limits at 0 (no connections at all): open them.
    const limits = { conn: -1, subs: -1, payload: -1, data: -1, leaf: -1, imports: -1, exports: -1, wildcards: true };
    const accountJwt = await encodeAccount('shoal-acct', account, { limits } as never, { signer: operator });
    const userJwt = await encodeUser('shoal-user', user, account);
    const srv = await securedServer(dir, {
      conf: `operator: ${operatorJwt}\nresolver: MEMORY\nresolver_preload: {\n  ${account.getPublicKey()}: ${accountJwt}\n}\n`,
    });
    procs.push(srv.proc);
    const creds = file('user.creds', fmtCreds(userJwt, user));
    const nc = await connectNats({ servers: [srv.url], credsFile: creds, waitOnFirstConnect: false });
    await nc.flush();
    await nc.close();
    // Signed by an account the server does not know.
    const rogue = createUser();
    const rogueCreds = file('rogue.creds', fmtCreds(await encodeUser('rogue', rogue, createAccount()), rogue));
    expect(await refused({ servers: [srv.url], credsFile: rogueCreds })).to.match(/authorization|authentication/i);
    await nodeConnects(srv.url, { SHOAL_NATS_CREDS: creds }, { credsFile: creds });
  });

  it('connects over TLS with a CA and a client certificate, and is refused without the client certificate or the CA', async () => {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=shoal-test-ca', '-keyout', 'ca-key.pem', '-out', 'ca.pem');
    const ext = file('san.ext', 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    for (const who of ['server', 'client']) {
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=shoal-test-${who}`, '-keyout', `${who}-key.pem`, '-out', `${who}.csr`);
      ssl('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', `${who}.pem`);
    }
    const p = (f: string) => join(dir, f);
    const srv = await securedServer(dir, {
      conf: `tls {\n  cert_file: "${p('server.pem')}"\n  key_file: "${p('server-key.pem')}"\n  ca_file: "${p('ca.pem')}"\n  verify: true\n  timeout: 5\n}\n`,
      scheme: 'tls',
    });
    procs.push(srv.proc);
    const tls = { caFile: p('ca.pem'), certFile: p('client.pem'), keyFile: p('client-key.pem') };
    const nc = await connectNats({ servers: [srv.url], tls, waitOnFirstConnect: false });
    expect(nc.info?.tls_required).to.equal(true);
    await nc.flush();
    await nc.close();
    await refused({ servers: [srv.url], tls: { caFile: tls.caFile } });
    await refused({ servers: [srv.url], tls: { certFile: tls.certFile, keyFile: tls.keyFile } });
    await nodeConnects(srv.url, { SHOAL_NATS_TLS_CA: tls.caFile, SHOAL_NATS_TLS_CERT: tls.certFile, SHOAL_NATS_TLS_KEY: tls.keyFile }, { tls });
  });

  it('builds options that reconnect forever, skip async traces, and set TLS files only when given', () => {
    const o = natsOptions({ servers: ['nats://a:4222'], tls: { caFile: '/ca.pem' } });
    expect(o).to.include({ maxReconnectAttempts: -1, noAsyncTraces: true, waitOnFirstConnect: true });
    expect(o.tls).to.deep.equal({ caFile: '/ca.pem' });
    expect(natsOptions({ servers: ['nats://a:4222'] }).tls).to.equal(undefined);
  });
});
