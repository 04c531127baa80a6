import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addClient, authConfig, ensureCreds, type Credential } from '@shoal/cli';
import { connectNats, type NatsConnection } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from './nats-server.js';

/**
 * A real nats-server with Shoal's roles on, as `shoal up` makes it: one NKey
 * per role plus two client identities (`client` and `client-b`).
 */
export interface SecureNats {
  nats: NatsServer;
  creds: Credential[];
  dir: string;
  seed(name: string): string;
  connectAs(name: string): Promise<NatsConnection>;
  stop(): Promise<void>;
}

/**
 * `opts.domain`: the roles' JetStream domain (the services' `jetstream.domain`);
 * `opts.server`: the server's own JetStream domain and extra config (leaf nodes).
 */
export async function startSecureNats(prefix = 'shoal', opts: { domain?: string; server?: { domain?: string; conf?: string } } = {}): Promise<SecureNats> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-creds-'));
  ensureCreds(dir);
  addClient(dir, 'b');
  const creds = ensureCreds(dir);
  const server = opts.server ?? {};
  const nats = await startNatsServer({ conf: [authConfig(creds, prefix, opts.domain), server.conf ?? ''].join('\n'), ...(server.domain ? { domain: server.domain } : {}) });
  const seed = (name: string) => {
    const c = creds.find((x) => x.name === name);
    if (!c) throw new Error(`no credential ${name}`);
    return c.seedFile;
  };
  return {
    nats, creds, dir, seed,
    connectAs: (name) => connectNats({ servers: [nats.url], nkeySeedFile: seed(name), waitOnFirstConnect: false, name }),
    async stop() {
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
