import { nanos, StorageType, type JetStreamManager, type KV, type NatsConnection, type NatsError, type StreamConfig, type StreamInfo } from 'nats';
import type { Logger } from './log.js';

/**
 * JetStream KV buckets as every Shoal service opens them: the settings
 * bucket (balancers, autoscalers, health-checkers), and whatever else a
 * service keeps (`shoal_<what>`: the autoscalers' leader lease, the nodes'
 * turn slots and parked keys). One place applies the `jetstream` config
 * (replicas, storage, domain), so that a bucket is the same whichever
 * service creates it first, and survives a server loss on a cluster.
 */
export interface BucketOptions {
  /** Stream replicas. Unset: 3 when the connected cluster has 3 or more servers, else 1. */
  replicas?: number;
  /** Values kept per key. Default 1. */
  history?: number;
  /**
   * Entries older than this are dropped (the stream's max_age): a lease.
   * Unset: kept. An existing bucket with another max_age is changed to it,
   * so that the configured value is the one in force.
   */
  ttlMs?: number;
  /** Default `file`. A stream cannot change its storage: an existing bucket keeps its own (logged). */
  storage?: 'file' | 'memory';
  /** JetStream domain (leaf nodes, superclusters); unset = the account's own JetStream. */
  domain?: string;
  /** JetStream API requests. Default 5000 ms. */
  timeoutMs?: number;
  log?: Logger;
}

/** The `jetstream` config section, as services pass it on. */
export type JetStreamSettings = Pick<BucketOptions, 'replicas' | 'storage' | 'domain' | 'timeoutMs'>;

/** JetStream error codes (nats-server's errors.json) we act on. */
export const JS_ERR = {
  STREAM_NOT_FOUND: 10059,
  /** "insufficient resources": not enough JetStream servers for the replicas asked. */
  INSUFFICIENT_RESOURCES: 10023,
  /** "replicas > 1 not supported in non-clustered mode". */
  REPLICAS_NOT_SUPPORTED: 10074,
} as const;

function apiCode(err: unknown): number | undefined {
  return (err as { api_error?: { err_code?: number } } | undefined)?.api_error?.err_code;
}

/** JetStream said the stream does not exist (an answer, not silence). */
export function isStreamNotFound(err: unknown): boolean {
  return apiCode(err) === JS_ERR.STREAM_NOT_FOUND || /stream not found/i.test(String((err as Error | undefined)?.message ?? ''));
}

/**
 * Nobody answered (no responders, 503) or nobody answered in time: JetStream
 * or the stream's leader is unreachable for now (a server lost, an election
 * under way). Never a reason to think the bucket is gone.
 */
export function isJetStreamUnavailable(err: unknown): boolean {
  const code = (err as NatsError | undefined)?.code;
  return code === '503' || code === 'TIMEOUT' || /no responders|timeout/i.test(String((err as Error | undefined)?.message ?? ''));
}

/**
 * Servers in the cluster of the server we are connected to: itself plus the
 * client URLs it gossips (`connect_urls` in its INFO). 1 when not clustered.
 */
export function clusterSize(nc: NatsConnection): number {
  const info = nc.info as { cluster?: string; connect_urls?: string[] } | undefined;
  if (!info?.cluster) return 1;
  const urls = new Set(info.connect_urls ?? []);
  return Math.max(1, urls.size);
}

/** The replicas to ask for when none is configured. */
export function defaultReplicas(nc: NatsConnection): number {
  return clusterSize(nc) >= 3 ? 3 : 1;
}

/**
 * Open the bucket, creating it if it does not exist. An existing bucket with
 * fewer replicas than wanted (created before the cluster grew, or by an older
 * version) is scaled up; more replicas than configured are left alone unless
 * `replicas` is set explicitly. Two services creating it at the same moment
 * make one of them fail once, so creation is tried twice. Without a
 * configured count, a cluster that cannot hold 3 replicas gets 1 (logged).
 */
export async function openBucket(nc: NatsConnection, name: string, opts: BucketOptions = {}): Promise<KV> {
  const timeout = opts.timeoutMs ?? 5000;
  const jsOpts = { timeout, ...(opts.domain ? { domain: opts.domain } : {}) };
  const js = nc.jetstream(jsOpts);
  const jsm = await nc.jetstreamManager({ ...jsOpts, checkAPI: false });
  const want = opts.replicas ?? defaultReplicas(nc);
  const stream = `KV_${name}`;
  let info: StreamInfo | undefined;
  try {
    info = await jsm.streams.info(stream);
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
  }
  if (info !== undefined) {
    await reconcile(jsm, info, want, opts);
    // Direct gets when the stream allows them (any replica answers), as a bucket opened by creating it does.
    return js.views.kv(name, { bindOnly: true, timeout, allow_direct: info.config.allow_direct === true });
  }
  const create = (replicas: number) => js.views.kv(name, {
    history: opts.history ?? 1, replicas, timeout,
    ...(opts.ttlMs ? { ttl: opts.ttlMs } : {}),
    storage: opts.storage === 'memory' ? StorageType.Memory : StorageType.File,
  });
  try {
    return await create(want);
  } catch (err) {
    if (opts.replicas === undefined && want > 1 && tooFewServers(err)) {
      opts.log?.warn('not enough JetStream servers for 3 replicas; creating the bucket with 1', { bucket: name, err: (err as Error).message });
      return create(1);
    }
    if (isJetStreamUnavailable(err)) throw err;
    // Most likely another service created it at the same moment.
    return create(want);
  }
}

function tooFewServers(err: unknown): boolean {
  const c = apiCode(err);
  return c === JS_ERR.INSUFFICIENT_RESOURCES || c === JS_ERR.REPLICAS_NOT_SUPPORTED || /insufficient resources|replicas > 1 not supported/i.test(String((err as Error).message));
}

/**
 * Bring an existing bucket's stream to what is configured, where a stream
 * update can: replicas (up, or down only when set explicitly) and max_age.
 * Storage cannot change in place; a mismatch is logged, not fixed.
 */
async function reconcile(jsm: JetStreamManager, info: StreamInfo, want: number, opts: BucketOptions): Promise<void> {
  const have = info.config;
  const name = have.name;
  const wantStorage = opts.storage === 'memory' ? StorageType.Memory : StorageType.File;
  if (opts.storage !== undefined && have.storage !== wantStorage) {
    opts.log?.warn('bucket keeps its storage (a stream cannot change it); delete the bucket to have it created anew', { stream: name, storage: have.storage, configured: wantStorage });
  }
  const change: Partial<StreamConfig> = {};
  if (have.num_replicas !== want && !(opts.replicas === undefined && have.num_replicas > want)) change.num_replicas = want;
  if (opts.ttlMs !== undefined && have.max_age !== nanos(opts.ttlMs)) {
    change.max_age = nanos(opts.ttlMs);
    // The server refuses a max_age below the duplicate window (set at creation from the old max_age, at most 2 min).
    if (opts.ttlMs > 0 && (have.duplicate_window ?? 0) > change.max_age) change.duplicate_window = change.max_age;
  }
  if (Object.keys(change).length === 0) return;
  const from = { replicas: have.num_replicas, maxAgeMs: Math.round(have.max_age / 1e6) };
  const to = { replicas: change.num_replicas ?? have.num_replicas, maxAgeMs: opts.ttlMs ?? from.maxAgeMs };
  try {
    await jsm.streams.update(name, { ...have, ...change });
    opts.log?.info('bucket changed to the configured settings', { stream: name, from, to });
  } catch (err) {
    // The bucket still works as it is; say so rather than fail.
    opts.log?.warn('could not change the bucket to the configured settings', { stream: name, from, to, err: (err as Error).message });
  }
}
