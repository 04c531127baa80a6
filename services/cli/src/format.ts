/** Output helpers: aligned tables, colour only on a terminal, compact log lines. */

const useColor = (stream: NodeJS.WriteStream): boolean =>
  Boolean(stream.isTTY) && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb';

const CODES = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, gray: 90 } as const;
export type Color = keyof typeof CODES;

export function paint(stream: NodeJS.WriteStream, color: Color, s: string): string {
  return useColor(stream) ? `\x1b[${CODES[color]}m${s}\x1b[0m` : s;
}

/**
 * A table for people: a header row, columns padded to their widest cell,
 * numbers aligned right. `right` lists the right-aligned column indexes.
 */
export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[], right: ReadonlySet<number> = new Set()): string {
  const cells = [header, ...rows].map((r) => r.map((c) => String(c)));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

export function ms(n: number): string {
  if (n < 1) return `${n.toFixed(2)} ms`;
  if (n < 1000) return `${Math.round(n)} ms`;
  return `${(n / 1000).toFixed(n < 10_000 ? 2 : 1)} s`;
}

/** A value for a one-line summary: strings bare (quoted if they have spaces), the rest as JSON, cut at `max`. */
export function short(v: unknown, max = 60): string {
  let s: string;
  if (typeof v === 'string') s = /\s/.test(v) || v === '' ? JSON.stringify(v) : v;
  else if (v instanceof Error) s = v.message;
  else s = JSON.stringify(v) ?? String(v);
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

/** Fields that every Shoal log line carries or that the prefix already says. */
const NOISE = new Set(['ts', 'time', 'level', 'msg', 'svc', 'node', 'balancerId', 'balancer', 'hostname', 'v']);

/**
 * One JSON log line of a Shoal service, as a short line for people:
 * `warn  nats status type=disconnect`. Debug/info levels are dimmed by the
 * caller. Non-JSON lines pass through unchanged. At most `maxFields` fields.
 */
export function compactLog(line: string, maxFields = 4): { level: string; text: string } {
  let rec: unknown;
  try { rec = JSON.parse(line); } catch { return { level: 'info', text: line }; }
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return { level: 'info', text: line };
  const r = rec as Record<string, unknown>;
  const level = typeof r.level === 'string' ? r.level : 'info';
  const isErr = (k: string) => k === 'err' || k === 'error';
  // The error first: it is what people read a warning for, and the field cap must not cut it.
  const fields = Object.entries(r).filter(([k, v]) => !NOISE.has(k) && v !== undefined && v !== null).sort(([a], [b]) => Number(isErr(b)) - Number(isErr(a)));
  // Errors get more room (first line of a stack only): they are what people read logs for.
  const shown = fields.slice(0, maxFields).map(([k, v]) => `${k}=${isErr(k) ? short(typeof v === 'string' ? v.split('\n')[0] : v, 200) : short(v, 48)}`);
  if (fields.length > maxFields) shown.push('…');
  const msg = typeof r.msg === 'string' ? r.msg : '';
  return { level, text: [msg, ...shown].filter(Boolean).join(' ') };
}
