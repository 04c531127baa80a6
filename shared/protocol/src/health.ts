import { decode } from './codec.js';
import { ErrorCodes, ShoalError } from './errors.js';
import { checkVersion } from './messages.js';
import { bool, num, obj, optional, str, type Check } from './validate.js';

/**
 * Health (issue 9): what the health-checker says about a node, and what a node
 * answers to its probes. The verdict's shape is a contract between helpers
 * and services: published (msgpack) on `<prefix>.health.verdict.<nodeId>` and
 * kept (JSON) in the settings bucket at `health.<nodeId>`.
 */
export interface HealthCheckResult {
  /** `ping`, `response_time`, `memory_usage`, or `backend` (a pool's backend). */
  type: string;
  ok: boolean;
  /** What was measured: ms for ping/response_time, percent of the memory limit for memory_usage. */
  value?: number;
  /** The threshold it was held against, in the same unit. */
  limit?: number;
  message?: string;
}

export interface HealthVerdict {
  v: number;
  nodeId: string;
  healthy: boolean;
  /** When the checker decided this (its clock, epoch ms). */
  at: number;
  /** Since when the node has been in this state (the checker's clock). */
  since: number;
  checkerId: string;
  /** Why unhealthy (the failing checks, with their numbers); absent when healthy. */
  reason?: string;
  /** The last round's checks. */
  checks: HealthCheckResult[];
  /** Per pool: its backend's health as the node reports it. */
  pools: Record<string, { healthy: boolean; reason?: string }>;
}

const checkShape = obj({
  type: str({ min: 1, max: 64 }),
  ok: bool(),
  value: optional(num()),
  limit: optional(num()),
  message: optional(str({ max: 2048 })),
});

const verdictCheck = obj({
  nodeId: str({ min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/ }),
  healthy: bool(),
  at: num({ min: 0 }),
  since: num({ min: 0 }),
  checkerId: str({ min: 1, max: 64 }),
  reason: optional(str({ max: 4096 })),
});

const list = <T>(check: Check<T>): Check<T[]> => (v, p) => {
  if (!Array.isArray(v)) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field ${p}: expected an array`, { details: { field: p } });
  return v.map((x, i) => check(x, `${p}.${i}`));
};
const poolHealth = obj({ healthy: bool(), reason: optional(str({ max: 4096 })) });

/** Validate a verdict already decoded (from msgpack or JSON). Throws BAD_REQUEST naming the bad field. */
export function validateHealthVerdict(m: unknown): HealthVerdict {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new ShoalError(ErrorCodes.BAD_REQUEST, 'health verdict: expected a map');
  const r = m as Record<string, unknown>;
  checkVersion(r);
  const base = verdictCheck(r, '');
  const checks = list(checkShape)(r.checks ?? [], 'checks');
  const poolsRaw = r.pools ?? {};
  if (poolsRaw === null || typeof poolsRaw !== 'object' || Array.isArray(poolsRaw)) throw new ShoalError(ErrorCodes.BAD_REQUEST, 'field pools: expected a map', { details: { field: 'pools' } });
  const pools: HealthVerdict['pools'] = {};
  for (const [k, v] of Object.entries(poolsRaw)) pools[k] = poolHealth(v, `pools.${k}`);
  return { v: r.v as number, ...base, checks, pools };
}

export function parseHealthVerdict(data: Uint8Array): HealthVerdict {
  return validateHealthVerdict(decode(data));
}

/** A node's answer on `<prefix>.node.<id>.probe`. */
export interface ProbeReply {
  nodeId: string;
  /** The node process's resident memory, bytes. */
  rssBytes: number;
  /** What the node's resources use besides (e.g. its Claude CLI processes), as its drivers count it, bytes. */
  resourcesBytes?: number;
  /** The node's memory limit (docs/configuration.md, node.memory_limit), bytes. */
  memoryLimitBytes: number;
  /** Per pool: how long validating one idle resource took (ms), and the backend's health. */
  pools: Record<string, ProbePool>;
}

export interface ProbePool {
  /** Time of the pool's round trip (validating one idle resource), ms; absent when nothing was idle. */
  ms?: number;
  /** The validated resource was usable (absent when nothing was validated). */
  valid?: boolean;
  /** The backend (Weaviate, the Claude CLI) as the pool's driver and its creates see it. */
  healthy: boolean;
  reason?: string;
}
