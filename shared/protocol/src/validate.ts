import { ErrorCodes, ShoalError } from './errors.js';

/**
 * A dozen-line runtime validator. Every decoded message goes through one of
 * these before any field is used; the first bad field is named in a
 * BAD_REQUEST. No schema framework: the messages are small and flat.
 */
export type Check<T> = (value: unknown, path: string) => T;

/** A short, never-throwing picture of a bad value (it may be a BigInt, or an object with a hostile toString). */
function show(got: unknown): string {
  try {
    return typeof got === 'object' ? String(JSON.stringify(got, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).slice(0, 40) : String(got).slice(0, 40);
  } catch {
    return Array.isArray(got) ? 'an array' : `a ${typeof got}`;
  }
}

function bad(path: string, want: string, got: unknown): never {
  const shown = got === undefined ? 'missing' : `${show(got)} (${Array.isArray(got) ? 'array' : typeof got})`;
  throw new ShoalError(ErrorCodes.BAD_REQUEST, `field ${path}: expected ${want}, got ${shown}`, { details: { field: path } });
}

export const str = (opts: { max?: number; pattern?: RegExp; min?: number } = {}): Check<string> => (v, p) => {
  if (typeof v !== 'string') bad(p, 'a string', v);
  if (opts.min !== undefined && v.length < opts.min) bad(p, `at least ${opts.min} characters`, v);
  if (opts.max !== undefined && v.length > opts.max) bad(p, `at most ${opts.max} characters`, v);
  if (opts.pattern && !opts.pattern.test(v)) bad(p, `a string matching ${opts.pattern}`, v);
  return v;
};

export const num = (opts: { min?: number; max?: number; int?: boolean } = {}): Check<number> => (v, p) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(p, 'a finite number', v);
  if (opts.int && !Number.isInteger(v)) bad(p, 'an integer', v);
  if (opts.min !== undefined && v < opts.min) bad(p, `a number >= ${opts.min}`, v);
  if (opts.max !== undefined && v > opts.max) bad(p, `a number <= ${opts.max}`, v);
  return v;
};

export const int = (opts: { min?: number; max?: number } = {}): Check<number> => num({ ...opts, int: true });

export const bool = (): Check<boolean> => (v, p) => (typeof v === 'boolean' ? v : bad(p, 'a boolean', v));

export const oneOf = <T extends string>(values: readonly T[]): Check<T> => (v, p) =>
  typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : bad(p, `one of ${values.join('|')}`, v);

/** Deepest nesting of maps and arrays an argument may have. */
export const MAX_ARGS_DEPTH = 64;
/** Most maps, arrays and values in one argument. */
export const MAX_ARGS_NODES = 100_000;

/**
 * Anything msgpack can carry, within bounds of depth and size (an argument
 * nested 2,000 deep overflowed the stack of whoever re-encoded it); the
 * driver validates its own args. Walked without recursion.
 */
export const any = (limits: { depth?: number; nodes?: number } = {}): Check<unknown> => (v, p) => {
  const maxDepth = limits.depth ?? MAX_ARGS_DEPTH;
  let budget = limits.nodes ?? MAX_ARGS_NODES;
  if (v === null || typeof v !== 'object') return v;
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length > 0) {
    const [x, depth] = stack.pop()!;
    if (--budget < 0) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field ${p}: more than ${limits.nodes ?? MAX_ARGS_NODES} values`, { details: { field: p, reason: 'too_large' } });
    if (x === null || typeof x !== 'object' || ArrayBuffer.isView(x)) continue;
    if (depth > maxDepth) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field ${p}: nested deeper than ${maxDepth} levels`, { details: { field: p, reason: 'too_deep' } });
    const children = Array.isArray(x) ? x : Object.values(x as Record<string, unknown>);
    for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, depth + 1]); else if (--budget < 0) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field ${p}: more than ${limits.nodes ?? MAX_ARGS_NODES} values`, { details: { field: p, reason: 'too_large' } });
  }
  return v;
};

export const optional = <T>(check: Check<T>): Check<T | undefined> => (v, p) => (v === undefined || v === null ? undefined : check(v, p));

type Shape = Record<string, Check<unknown>>;
export type Infer<S extends Shape> = {
  [K in keyof S as undefined extends ReturnType<S[K]> ? never : K]: ReturnType<S[K]>;
} & {
  [K in keyof S as undefined extends ReturnType<S[K]> ? K : never]?: ReturnType<S[K]>;
};

export const obj = <S extends Shape>(shape: S): Check<Infer<S>> => (v, p) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(p, 'a map', v);
  const src = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key in shape) {
    const val = shape[key]!(src[key], p ? `${p}.${key}` : key);
    if (val !== undefined) out[key] = val;
  }
  return out as Infer<S>;
};
