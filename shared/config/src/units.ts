import { ConfigError } from './errors.js';

const MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
// Binary, as the design's Go code is (`50 * 1024 * 1024 // 50MB`): 1KB = 1KiB = 1024 bytes.
const BYTES: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * Milliseconds from `300ms`, `30s`, `1.5s`, `5m`, `1h`, `1d`, or a number
 * (already milliseconds; so is a bare numeric string). Drivers use it for
 * their own options; `key` and `source` only make the error readable.
 */
export function parseDuration(v: unknown, key = 'duration', source = 'pool options'): number {
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(v.trim()) : null;
  const ms = typeof v === 'number' ? v : m ? Number(m[1]) * MS[m[2] ?? 'ms']! : NaN;
  if (!Number.isFinite(ms) || ms < 0) {
    throw new ConfigError(key, v, source, 'not a duration (e.g. 300ms, 30s, 5m, 1h; a bare number is ms)');
  }
  return ms;
}

/**
 * Whole bytes from `512KB`, `100MB`, `1GB`, `1.5GiB`, `64k`, or a number
 * (already bytes). Units are binary whether written MB or MiB.
 */
export function parseSize(v: unknown, key = 'size', source = 'pool options'): number {
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$/i.exec(v.trim()) : null;
  const bytes = typeof v === 'number' ? v : m ? Number(m[1]) * BYTES[(m[2] ?? '').toLowerCase()]! : NaN;
  if (!Number.isFinite(bytes) || bytes < 0) {
    throw new ConfigError(key, v, source, 'not a size (e.g. 512KB, 100MB, 1GB; binary units, 1MB = 1048576 bytes; a bare number is bytes)');
  }
  return Math.round(bytes);
}
