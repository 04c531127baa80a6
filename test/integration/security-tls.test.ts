import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { subjects } from '@shoal/protocol';
import { connectNats, type NatsConnection, type NatsSettings } from '@shoal/runtime';
import { writeConfig } from '../helpers/cluster.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { startPoolNode } from '../helpers/procs.js';

/**
 * TLS and mutual TLS against a real nats-server that requires them, with
 * certificates made here by `openssl` (a CA, a server certificate for
 * 127.0.0.1, a client certificate). The `nats.tls.*` keys
 * (SHOAL_NATS_TLS_CA/CERT/KEY) are what a service uses.
 */
describe('security: TLS and mutual TLS to nats-server (integration, openssl certificates)', function () {
  this.timeout(60_000);
  let dir: string;
  const f = (n: string) => join(dir, n);

  before(function () {
    this.timeout(30_000);
    dir = mkdtempSync(join(tmpdir(), 'shoal-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=shoal-test-ca');
    writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
    for (const [name, ext] of [['server', 'server.ext'], ['client', 'client.ext'], ['other', 'client.ext']] as const) {
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      if (name === 'other') {
        // Signed by a CA the server does not trust.
        ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other-ca-key.pem', '-out', 'other-ca.pem', '-days', '2', '-subj', '/CN=other-ca');
        ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'other-ca.pem', '-CAkey', 'other-ca-key.pem', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext);
      } else {
        ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext);
      }
    }
  });

  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  const tlsConf = (verify: boolean) => `tls {\n  cert_file: "${f('server.pem')}"\n  key_file: "${f('server-key.pem')}"\n  ca_file: "${f('ca.pem')}"\n  verify: ${verify}\n  timeout: 3\n}\n`;

  /** Connect, or the error's message. */
  async function attempt(url: string, tls: NatsSettings['tls']): Promise<NatsConnection | string> {
    try {
      return await connectNats({ servers: [url], tls, waitOnFirstConnect: false });
    } catch (err) {
      return (err as Error).message || String(err);
    }
  }

  async function roundTrip(nc: NatsConnection): Promise<void> {
    const sub = nc.subscribe('tls.check', { max: 1 });
    nc.publish('tls.check', new TextEncoder().encode('hi'));
    for await (const m of sub) expect(new TextDecoder().decode(m.data)).to.equal('hi');
  }

  describe('server-side TLS', () => {
    let nats: NatsServer;
    before(async () => { nats = await startNatsServer({ jetstream: false, conf: tlsConf(false) }); });
    after(async () => { await nats?.stop(); });

    it('connects with the CA, and refuses a client that does not trust the server', async () => {
      const ok = await attempt(nats.url, { caFile: f('ca.pem') });
      expect(ok, String(ok)).not.to.be.a('string');
      await roundTrip(ok as NatsConnection);
      await (ok as NatsConnection).close();
      const wrongCa = await attempt(nats.url, { caFile: f('other-ca.pem') });
      expect(wrongCa).to.be.a('string');
      if (typeof wrongCa !== 'string') await wrongCa.close();
    });
  });

  describe('mutual TLS (verify: true)', () => {
    let nats: NatsServer;
    before(async () => { nats = await startNatsServer({ jetstream: false, conf: tlsConf(true) }); });
    after(async () => { await nats?.stop(); });

    it('connects with a client certificate from the trusted CA', async () => {
      const nc = await attempt(nats.url, { caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client-key.pem') });
      expect(nc, String(nc)).not.to.be.a('string');
      await roundTrip(nc as NatsConnection);
      await (nc as NatsConnection).close();
    });

    it('refuses no client certificate, and one from another CA', async () => {
      for (const tls of [{ caFile: f('ca.pem') }, { caFile: f('ca.pem'), certFile: f('other.pem'), keyFile: f('other-key.pem') }]) {
        const r = await attempt(nats.url, tls);
        if (typeof r !== 'string') await r.close();
        expect(r, JSON.stringify(tls)).to.be.a('string');
      }
    });

    it('a pool-node configured by SHOAL_NATS_TLS_* joins over mutual TLS', async () => {
      const node = await startPoolNode({
        SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: writeConfig({ min_size: 1, max_size: 1 }), SHOAL_NODE_ID: 'tls1',
        SHOAL_NATS_TLS_CA: f('ca.pem'), SHOAL_NATS_TLS_CERT: f('client.pem'), SHOAL_NATS_TLS_KEY: f('client-key.pem'),
      });
      const nc = (await attempt(nats.url, { caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client-key.pem') })) as NatsConnection;
      try {
        const sub = nc.subscribe(subjects().heartbeat('tls1'), { max: 1 });
        for await (const m of sub) expect(m.subject).to.equal('shoal.hb.tls1');
      } finally {
        await nc.close();
        await node.kill('SIGKILL');
      }
    });
  });
});
