import { AUTOSCALER_LEADER_BUCKET, DEFAULT_PREFIX, SETTINGS_BUCKET } from './subjects.js';

/**
 * Who may publish and subscribe to what on NATS, per role: the one table
 * `shoal up` turns into nats-server `authorization` blocks and
 * docs/security.md prints. To give a new service its rights, add a role here
 * (and its credential is generated like the others).
 *
 * Rules of thumb the table follows:
 * - Everyone receives replies only under its own inbox prefix
 *   (`_INBOX.<its public key>`), so no one reads another's replies.
 * - Only services publish to `_INBOX.>` (replies and streamed events);
 *   a client cannot inject a reply into another client's inbox.
 * - Steering (admin subjects, scale, drain, settings KV) is admin's, plus
 *   the autoscaler for scale/targets and the health checker for verdicts.
 */
export const ROLES = ['pool-node', 'balancer', 'autoscaler', 'health-checker', 'client', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface Permission {
  allow: string[];
  deny?: string[];
}

export interface RolePermissions {
  publish: Permission;
  subscribe: Permission;
}

/** Every reply subject Shoal sends to starts with this (nats.js's default inbox root). */
export const INBOX_ROOT = '_INBOX';

/**
 * A connection's inbox prefix, derived from its NKey public key so that the
 * server can tie it to the credential: `_INBOX.<public key>`.
 */
export function inboxPrefixFor(publicKey: string): string {
  return `${INBOX_ROOT}.${publicKey}`;
}

/**
 * The reply rule: a reply or a streamed event only ever goes to an inbox
 * (`_INBOX.` followed by at least one token, no wildcards, no spaces). A
 * request naming anything else as its reply subject gets nothing: a node
 * must not be made to publish on, e.g., another node's drain subject.
 */
export function isInboxSubject(s: string | undefined): boolean {
  if (!s || s.length > 255 || !s.startsWith(`${INBOX_ROOT}.`) || s.length === INBOX_ROOT.length + 1) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // '*' '>' space, tab, CR, LF; empty tokens ('..' or a trailing '.')
    if (c === 42 || c === 62 || c <= 32) return false;
    if (c === 46 && (i === s.length - 1 || s.charCodeAt(i + 1) === 46)) return false;
  }
  return true;
}

/** The JetStream stream behind a KV bucket. */
const kvStream = (bucket: string) => `KV_${bucket}`;

/**
 * Where a connection's JetStream requests go: `$JS.API` and, with a
 * JetStream domain (`jetstream.domain`), `$JS.<domain>.API`, under which
 * nats.js also sends KV writes (`$JS.<domain>.API.$KV.<bucket>.<key>`).
 * A domain needs both: a server in another domain (a leaf node) checks the
 * subject as sent, while a server of that very domain maps it to `$JS.API`
 * (and `$KV`) first and checks the mapped subject.
 */
function jsApis(domain?: string): string[] {
  return domain ? ['$JS.API', `$JS.${domain}.API`] : ['$JS.API'];
}
const kvRoots = (apis: string[]) => apis.map((api) => (api === '$JS.API' ? '$KV' : `${api}.$KV`));

/** Read a KV bucket (get, watch): stream/consumer info and creation, direct gets, acks and flow control. */
function kvRead(bucket: string, apis: string[]): string[] {
  const st = kvStream(bucket);
  return [
    ...apis.flatMap((api) => [
      `${api}.INFO`,
      `${api}.STREAM.INFO.${st}`,
      `${api}.STREAM.MSG.GET.${st}`,
      `${api}.DIRECT.GET.${st}.>`,
      `${api}.CONSUMER.CREATE.${st}`,
      `${api}.CONSUMER.CREATE.${st}.>`,
      `${api}.CONSUMER.DELETE.${st}.>`,
      `${api}.CONSUMER.INFO.${st}.>`,
    ]),
    '$JS.FC.>',
    '$JS.ACK.>',
  ];
}

/** A KV watcher also hears the bucket's stream advisories (to notice the bucket deleted and recreate its watch). */
const kvAdvisories = (bucket: string) => `$JS.EVENT.ADVISORY.STREAM.*.${kvStream(bucket)}`;

/** Write some keys of a KV bucket (and create the bucket if it is missing). */
function kvWrite(bucket: string, keys: string[], apis: string[]): string[] {
  return [...apis.map((api) => `${api}.STREAM.CREATE.${kvStream(bucket)}`), ...kvRoots(apis).flatMap((kv) => keys.map((k) => `${kv}.${bucket}.${k}`))];
}

/**
 * A service's own bucket (no other role writes it): it may also update the
 * stream, so that openBucket can bring it to the configured replicas and
 * max_age (the autoscaler's lease). Not for the shared settings bucket: an
 * update there (a max_age of 1 s) would let any one service wipe the
 * operator's settings.
 */
function kvOwn(bucket: string, apis: string[]): string[] {
  return [...kvRead(bucket, apis), ...kvWrite(bucket, ['>'], apis), ...apis.map((api) => `${api}.STREAM.UPDATE.${kvStream(bucket)}`)];
}

/** The whole JetStream API and every bucket (a domain's `$KV` is under its API): the operator's. */
const jsAll = (apis: string[]) => [...apis.map((api) => `${api}.>`), '$JS.FC.>', '$JS.ACK.>', '$KV.>'];

/** NATS micro discovery (`$SRV.PING|INFO|STATS[.<name>[.<id>]]`): every service answers it. */
const MICRO = '$SRV.>';
/** The Claude drivers' cluster-wide turn slots (services/pool-node/src/turn-gate.ts). */
const TURNS_BUCKET = 'shoal_turns';
/** Parked conversations' keys, for a resume on another node (services/pool-node/src/parking.ts). */
const PARKED_BUCKET = 'shoal_parked';

/**
 * The permissions of `role` under subject prefix `prefix`, for a connection
 * whose inbox prefix is `inbox` (see inboxPrefixFor). With `domain` (the
 * services' `jetstream.domain`) the JetStream rights extend to that domain's
 * API (see jsApis).
 */
export function permissionsFor(role: Role, inbox: string, prefix: string = DEFAULT_PREFIX, bucket: string = SETTINGS_BUCKET, domain?: string): RolePermissions {
  const p = prefix;
  const js = jsApis(domain);
  const myInbox = `${inbox}.>`;
  // Subjects no client may ever publish on, even when a wildcard below would match them
  // (a node named `acquire` heartbeats on `<p>.hb.acquire`, which `<p>.*.acquire` matches).
  const steering = [`${p}.hb.>`, `${p}.admin.>`, `${p}.events.>`, `${p}.health.>`, `${p}.autoscaler.>`, `${p}.node.*.scale`, `${p}.node.*.drain`];
  switch (role) {
    case 'client':
      return {
        publish: {
          allow: [`${p}.*.acquire`, `${p}.*.exec`, `${p}.node.*.acquire`, `${p}.node.*.exec`, `${p}.node.*.lease.>`],
          deny: steering,
        },
        // Lost-lease and node-gone announcements are for holders (issue 9); they carry no secrets.
        subscribe: { allow: [myInbox, `${p}.events.lease.*`, `${p}.events.node.*`] },
      };
    case 'pool-node':
      return {
        // Reads the settings bucket (watches its own `weight.<id>`: a parked key's direct acquire respects weight 0), writes none of it.
        publish: { allow: [`${INBOX_ROOT}.>`, `${p}.hb.*`, `${p}.events.lease.*`, ...kvOwn(TURNS_BUCKET, js), ...kvOwn(PARKED_BUCKET, js), ...kvRead(bucket, js)] },
        // Its own verdicts (a node unhealthy for long drains itself); the role is shared by every node.
        subscribe: { allow: [myInbox, `${p}.node.*.>`, `${p}.health.verdict.*`, MICRO] },
      };
    case 'balancer':
      return {
        publish: {
          allow: [
            `${INBOX_ROOT}.>`,
            `${p}.node.*.acquire`, `${p}.node.*.exec`, `${p}.node.*.status`, `${p}.node.*.lease.release`,
            `${p}.events.node.*`, `${p}.autoscaler.status`,
            ...kvRead(bucket, js), ...kvWrite(bucket, ['strategy', 'weight.>'], js),
          ],
        },
        subscribe: { allow: [myInbox, `${p}.*.acquire`, `${p}.*.exec`, `${p}.hb.*`, `${p}.admin.>`, `${p}.health.>`, `${p}.events.>`, `${p}.autoscaler.desired.*`, kvAdvisories(bucket), MICRO] },
      };
    case 'autoscaler':
      return {
        publish: {
          // Its own keys of the settings bucket (targets, the epoch) and its leader bucket, nothing else of
          // JetStream: no purge or delete of a stream, no other service's bucket.
          allow: [
            `${INBOX_ROOT}.>`, `${p}.node.*.scale`, `${p}.node.*.status`, `${p}.autoscaler.>`,
            ...kvRead(bucket, js), ...kvWrite(bucket, ['target.>', 'autoscaler.>'], js),
            ...kvOwn(AUTOSCALER_LEADER_BUCKET, js),
          ],
        },
        subscribe: { allow: [myInbox, `${p}.hb.*`, `${p}.admin.scale.>`, `${p}.autoscaler.>`, `${p}.health.>`, `${p}.events.>`, '$JS.EVENT.ADVISORY.>', MICRO] },
      };
    case 'health-checker':
      return {
        publish: {
          allow: [
            `${INBOX_ROOT}.>`, `${p}.node.*.ping`, `${p}.node.*.probe`, `${p}.node.*.status`,
            `${p}.health.>`,
            ...kvRead(bucket, js), ...kvWrite(bucket, ['health.>'], js),
          ],
        },
        subscribe: { allow: [myInbox, `${p}.hb.*`, `${p}.health.>`, `${p}.events.>`, kvAdvisories(bucket), MICRO] },
      };
    case 'admin':
      // The operator: steers everything under the prefix and the KV buckets, reads what a status needs.
      return {
        publish: { allow: [`${p}.>`, ...jsAll(js), MICRO], deny: [`${p}.hb.>`] },
        subscribe: { allow: [myInbox, `${p}.hb.*`, `${p}.events.>`, `${p}.health.>`, `${p}.autoscaler.>`, '$JS.EVENT.ADVISORY.>'] },
      };
  }
}
