/**
 * A small argv parser: `--flag value`, `--flag=value`, boolean `--flag`,
 * short aliases (`-h`), and `--` to end flags. Flags may come before or after
 * the positionals. Anything unexpected is a UsageError (exit code 2).
 */

export type FlagType = 'string' | 'number' | 'boolean';

export interface FlagSpec {
  type: FlagType;
  /** One-letter alias, without the dash. */
  short?: string;
  /** Shown in help after the flag name, e.g. `ms`. */
  arg?: string;
  help: string;
}

export type FlagSpecs = Record<string, FlagSpec>;
export type FlagValues = Record<string, string | number | boolean | undefined>;

export class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Parsed {
  positionals: string[];
  flags: FlagValues;
}

export function parseArgs(argv: readonly string[], specs: FlagSpecs): Parsed {
  const positionals: string[] = [];
  const flags: FlagValues = {};
  const byShort = new Map(Object.entries(specs).filter(([, s]) => s.short).map(([name, s]) => [s.short!, name]));
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (tok === '--') { positionals.push(...argv.slice(i + 1)); break; }
    let name: string | undefined;
    let inline: string | undefined;
    if (tok.startsWith('--') && tok.length > 2) {
      const eq = tok.indexOf('=');
      name = eq > 0 ? tok.slice(2, eq) : tok.slice(2);
      if (eq > 0) inline = tok.slice(eq + 1);
    } else if (/^-[A-Za-z]$/.test(tok)) {
      name = byShort.get(tok.slice(1));
      if (!name) throw new UsageError(`unknown option ${tok}`);
    } else {
      positionals.push(tok);
      continue;
    }
    const spec = specs[name];
    if (!spec) throw new UsageError(`unknown option --${name}${suggest(name, Object.keys(specs))}`);
    if (spec.type === 'boolean') {
      if (inline !== undefined && !['true', 'false'].includes(inline)) throw new UsageError(`--${name} takes no value`);
      flags[name] = inline !== 'false';
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      // A number may be negative; a string value must not look like another flag.
      if (next === undefined || (next.startsWith('-') && !(spec.type === 'number' && /^-\d/.test(next)))) {
        throw new UsageError(`--${name} needs a value${spec.arg ? ` (${spec.arg})` : ''}`);
      }
      value = next;
      i++;
    }
    flags[name] = spec.type === 'number' ? toNumber(name, value) : value;
  }
  return { positionals, flags };
}

function toNumber(name: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}

/** ` (did you mean --x?)` when a known name is close to the typo. */
export function suggest(word: string, known: readonly string[], dashes = '--'): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(word, k);
    if (d < bestD) { bestD = d; best = k; }
  }
  return best !== undefined && bestD <= (word.length <= 3 ? 1 : 2) ? ` (did you mean ${dashes}${best}?)` : '';
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Integer flag within bounds, or a UsageError. */
export function intFlag(flags: FlagValues, name: string, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = flags[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new UsageError(`--${name} must be an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ' up'}, got ${String(v)}`);
  }
  return v;
}

/** Help text for a list of flags, aligned. */
export function flagHelp(specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, s]) => [`${s.short ? `-${s.short}, ` : '    '}--${name}${s.arg ? ` <${s.arg}>` : ''}`, s.help] as const);
  const w = Math.max(0, ...rows.map(([l]) => l.length));
  return rows.map(([l, h]) => `  ${l.padEnd(w)}  ${h}`).join('\n');
}
