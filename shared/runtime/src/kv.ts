import { StorageType, type JetStreamManager, type KV, type NatsConnection, type NatsError, type StreamInfo } from 'nats';
import type { Logger } from './log.js';

/**
 * JetStream KV buckets as every Shoal service opens them: the settings
 * bucket (balancers), and whatever else a service keeps (`shoal_<what>`).
 * One place decides replicas, so that a bucket created by whichever service
 * comes first survives a server loss on a cluster.
 */
export interface BucketOptions {
  /** Stream replicas. Unset: 3 when the connected cluster has 3 or more servers, else 1. */
  replicas?: number;
  /** Values kept per key. Default 1. */
  history?: number;
  /** Default `file`. */
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
    await rescale(jsm, info, want, opts);
    return js.views.kv(name, { bindOnly: true, timeout });
  }
  const create = (replicas: number) => js.views.kv(name, {
    history: opts.history ?? 1, replicas, timeout,
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

async function rescale(jsm: JetStreamManager, info: StreamInfo, want: number, opts: BucketOptions): Promise<void> {
  const have = info.config.num_replicas;
  if (have === want || (opts.replicas === undefined && have > want)) return;
  try {
    await jsm.streams.update(info.config.name, { ...info.config, num_replicas: want });
    opts.log?.info('bucket replicas changed', { stream: info.config.name, from: have, to: want });
  } catch (err) {
    // The bucket still works with the replicas it has; say so rather than fail.
    opts.log?.warn('could not change the bucket replicas', { stream: info.config.name, from: have, to: want, err: (err as Error).message });
  }
}
