import { chownSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from './args.js';
import { EXIT, type Command } from './context.js';
import { authConfig, defaultCredsDir, ensureCreds } from './nats-auth.js';
import { ROOT } from './up.js';

/** `uid[:gid]`, numbers only. */
function owner(v: string): { uid: number; gid: number } {
  const m = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(v);
  if (!m) throw new UsageError(`--owner takes uid[:gid] (numbers), got '${v}'`);
  const uid = Number(m[1]);
  return { uid, gid: m[2] !== undefined ? Number(m[2]) : uid };
}

/**
 * The credentials of a deployment outside `shoal up` (docker compose,
 * Kubernetes): the same role NKeys `shoal up` uses, and the nats-server
 * `authorization` block for them, written where the deployment mounts them
 * as secrets. Existing seeds are kept (rotation is deleting a file).
 */
const creds: Command = {
  name: 'creds',
  usage: '',
  summary: 'make the role NKeys and nats-server auth config for a deployment (compose, Kubernetes)',
  details: [
    'Writes <dir>/<role>.nk (one seed per role, mode 0600, kept if present) and <dir>/nats-auth.conf (the authorization',
    'block for nats-server, from the role table in shared/protocol/src/roles.ts). --owner gives the seeds to the user a',
    'container runs as (the image\'s `node`, uid 1000), so that a secret mounted from the file is readable there.',
  ].join('\n'),
  flags: {
    dir: { type: 'string', arg: 'dir', help: 'where to write (default $SHOAL_CREDS_DIR or .shoal/creds in the repository)' },
    owner: { type: 'string', arg: 'uid[:gid]', help: 'chown the seed files to this user (e.g. 1000 for the image\'s node user; needs the rights to chown)' },
    domain: { type: 'string', arg: 'domain', help: 'the services\' jetstream.domain: their JetStream rights also on $JS.<domain>.API (default $SHOAL_JETSTREAM_DOMAIN, else none)' },
  },
  args: [0, 0],
  async run(ctx, _args, flags) {
    const dir = typeof flags.dir === 'string' ? resolve(flags.dir) : process.env.SHOAL_CREDS_DIR ? resolve(process.env.SHOAL_CREDS_DIR) : defaultCredsDir(ROOT);
    const who = typeof flags.owner === 'string' ? owner(flags.owner) : undefined;
    const domain = typeof flags.domain === 'string' ? flags.domain : process.env.SHOAL_JETSTREAM_DOMAIN || undefined;
    if (domain !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(domain)) throw new UsageError(`--domain takes 1-64 of A-Z a-z 0-9 _ -, got '${domain}'`);
    const made = ensureCreds(dir);
    const conf = join(dir, 'nats-auth.conf');
    writeFileSync(conf, authConfig(made, ctx.prefix, domain), { mode: 0o644 });
    if (who) for (const c of made) chownSync(c.seedFile, who.uid, who.gid);
    if (ctx.json) ctx.emit({ dir, authConfig: conf, roles: made.map((c) => ({ name: c.name, role: c.role, seedFile: c.seedFile, publicKey: c.publicKey })) });
    else {
      for (const c of made) ctx.out(`${c.name.padEnd(16)} ${c.publicKey}  ${c.seedFile}`);
      ctx.out(`nats-server config: ${conf}`);
    }
    return EXIT.OK;
  },
};

export const CREDS_COMMANDS: Command[] = [creds];
