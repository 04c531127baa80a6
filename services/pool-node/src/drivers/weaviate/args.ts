import { ErrorCodes, ShoalError } from '@shoal/protocol';
import weaviate, { Filters, type FilterValue } from 'weaviate-client';

/**
 * Argument checking for the weaviate ops: small composable validators that
 * name the failing path (`filters.and[1].value`), so a bad call comes back as
 * BAD_REQUEST saying exactly what is wrong — before anything reaches Weaviate.
 * Unknown keys are refused (a misspelt `limt` must not silently mean 10).
 */

export type V<T> = (v: unknown, at: string) => T;
type Shape = Record<string, V<unknown>>;
export type Out<S extends Shape> = { [K in keyof S]: ReturnType<S[K]> };

export class ArgError extends ShoalError {
  constructor(at: string, why: string, got?: unknown) {
    const shown = got === undefined ? '' : `, got ${preview(got)}`;
    super(ErrorCodes.BAD_REQUEST, `${at}: ${why}${shown}`, { details: { path: at, retryable: false } });
  }
}

function preview(v: unknown): string {
  if (v instanceof Date) return v.toISOString();
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !(v instanceof Uint8Array);

export const str = (o: { max?: number; re?: RegExp; what?: string } = {}): V<string> => (v, at) => {
  if (typeof v !== 'string' || v.length === 0) throw new ArgError(at, 'expected a non-empty string', v);
  if (v.length > (o.max ?? 65536)) throw new ArgError(at, `longer than ${o.max ?? 65536} characters`);
  if (o.re && !o.re.test(v)) throw new ArgError(at, `expected ${o.what ?? o.re.source}`, v);
  return v;
};

export const int = (min: number, max: number): V<number> => (v, at) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ArgError(at, `expected an integer from ${min} to ${max}`, v);
  return v;
};

export const num = (min = -Infinity, max = Infinity): V<number> => (v, at) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new ArgError(at, `expected a number${Number.isFinite(min) ? ` from ${min}` : ''}${Number.isFinite(max) ? ` to ${max}` : ''}`, v);
  return v;
};

export const bool: V<boolean> = (v, at) => {
  if (typeof v !== 'boolean') throw new ArgError(at, 'expected true or false', v);
  return v;
};

export const oneOf = <T extends string>(values: readonly T[]): V<T> => (v, at) => {
  if (!values.includes(v as T)) throw new ArgError(at, `expected one of ${values.join(', ')}`, v);
  return v as T;
};

export const arr = <T>(item: V<T>, o: { min?: number; max?: number } = {}): V<T[]> => (v, at) => {
  if (!Array.isArray(v)) throw new ArgError(at, 'expected a list', v);
  if (v.length < (o.min ?? 0)) throw new ArgError(at, `expected at least ${o.min} item(s)`);
  if (v.length > (o.max ?? 10_000)) throw new ArgError(at, `more than ${o.max ?? 10_000} items`);
  return v.map((x, i) => item(x, `${at}[${i}]`));
};

export const record = <T>(val: V<T>, o: { max?: number } = {}): V<Record<string, T>> => (v, at) => {
  if (!isObj(v)) throw new ArgError(at, 'expected a mapping', v);
  const entries = Object.entries(v);
  if (entries.length > (o.max ?? 10_000)) throw new ArgError(at, `more than ${o.max ?? 10_000} keys`);
  return Object.fromEntries(entries.map(([k, x]) => [k, val(x, `${at}.${k}`)]));
};

export const opt = <T>(val: V<T>): V<T | undefined> => (v, at) => (v === undefined || v === null ? undefined : val(v, at));

/** A mapping with exactly these keys (the optional ones may be absent). */
export const obj = <S extends Shape>(shape: S): V<Out<S>> => (v, at) => {
  const o = v === undefined || v === null ? {} : v;
  if (!isObj(o)) throw new ArgError(at, 'expected a mapping of arguments', v);
  const unknown = Object.keys(o).filter((k) => !Object.hasOwn(shape, k));
  if (unknown.length > 0) throw new ArgError(at ? `${at}.${unknown[0]}` : unknown[0]!, `unknown argument (expected ${Object.keys(shape).join(', ') || 'none'})`);
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(shape)) {
    const x = val(o[k], at ? `${at}.${k}` : k);
    if (x !== undefined) out[k] = x;
  }
  return out as Out<S>;
};

// ---- Weaviate-specific values ------------------------------------------------------

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const uuid = str({ re: UUID, what: 'a UUID' });
export const collectionName = str({ max: 255, re: /^[A-Za-z][_0-9A-Za-z]*$/, what: 'a collection name (a letter, then letters, digits, _)' });
export const propertyName = str({ max: 255, re: /^[_A-Za-z][_0-9A-Za-z]*$/, what: 'a property name' });

const MAX_DIMS = 65_536;
const floats: V<number[]> = (v, at) => {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_DIMS) throw new ArgError(at, `expected a vector: a list of 1 to ${MAX_DIMS} numbers`, v);
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number' || !Number.isFinite(v[i])) throw new ArgError(`${at}[${i}]`, 'expected a finite number', v[i]);
  return v as number[];
};
const multiVector: V<number[][]> = arr(floats, { min: 1, max: 4096 });
/** One vector, or named vectors (each one vector or a multi-vector). */
export const vectors: V<number[] | Record<string, number[] | number[][]>> = (v, at) => {
  if (Array.isArray(v)) return floats(v, at);
  if (isObj(v)) {
    if (Object.keys(v).length === 0) throw new ArgError(at, 'expected at least one named vector');
    return record((x, a) => (Array.isArray(x) && Array.isArray(x[0]) ? multiVector(x, a) : floats(x, a)), { max: 64 })(v, at);
  }
  throw new ArgError(at, 'expected a vector (list of numbers) or named vectors ({name: vector})', v);
};

/** Property values: what msgpack can carry and Weaviate can store. */
export const properties: V<Record<string, unknown>> = (v, at) => {
  const check = (x: unknown, a: string, depth: number): void => {
    if (depth > 16) throw new ArgError(a, 'nested deeper than 16 levels');
    if (x === null || typeof x === 'string' || typeof x === 'boolean' || x instanceof Date) return;
    if (typeof x === 'number') { if (!Number.isFinite(x)) throw new ArgError(a, 'expected a finite number', x); return; }
    if (Array.isArray(x)) { if (x.length > 100_000) throw new ArgError(a, 'more than 100000 items'); x.forEach((y, i) => check(y, `${a}[${i}]`, depth + 1)); return; }
    if (isObj(x)) { for (const [k, y] of Object.entries(x)) check(y, `${a}.${k}`, depth + 1); return; }
    throw new ArgError(a, 'expected a string, number, boolean, date, list or mapping', x);
  };
  if (!isObj(v)) throw new ArgError(at, 'expected a mapping of property name to value', v);
  for (const [k, x] of Object.entries(v)) {
    propertyName(k, `${at}.${k}`);
    check(x, `${at}.${k}`, 1);
  }
  return v;
};

export const consistency = oneOf(['ONE', 'QUORUM', 'ALL'] as const);
export const tenant = str({ max: 64, re: /^[A-Za-z0-9_-]+$/, what: 'a tenant name' });

export const METADATA = ['creationTime', 'updateTime', 'distance', 'certainty', 'score', 'explainScore', 'isConsistent'] as const;
export type MetadataKey = (typeof METADATA)[number];
export const returnMetadata: V<'all' | MetadataKey[]> = (v, at) => (v === 'all' ? 'all' : arr(oneOf(METADATA), { max: METADATA.length })(v, at));
export const includeVector: V<boolean | string[]> = (v, at) => (typeof v === 'boolean' ? v : arr(str({ max: 255 }), { min: 1, max: 64 })(v, at));
export const targetVector: V<string | string[]> = (v, at) => (typeof v === 'string' ? str({ max: 255 })(v, at) : arr(str({ max: 255 }), { min: 1, max: 64 })(v, at));

/** bm25/hybrid query properties: 'title', 'title^2' or {name, weight}. */
export const queryProperties: V<(string | { name: string; weight: number })[]> = arr((v, at) => {
  if (typeof v === 'string') return str({ max: 255, re: /^[_A-Za-z][_0-9A-Za-z]*(\^\d+(\.\d+)?)?$/, what: 'a property name, optionally ^weight' })(v, at);
  return obj({ name: propertyName, weight: num(0) })(v, at);
}, { min: 1, max: 256 });

export const bm25Operator: V<{ operator: 'And' } | { operator: 'Or'; minimumMatch: number }> = (v, at) => {
  if (isObj(v) && v.operator === 'And') return obj({ operator: oneOf(['And'] as const) })(v, at);
  return obj({ operator: oneOf(['Or'] as const), minimumMatch: int(1, 1000) })(v, at) as { operator: 'Or'; minimumMatch: number };
};

// ---- filters ---------------------------------------------------------------------

/**
 * Filters as plain data (they cross NATS, so no builder objects):
 *   {property: 'year', op: 'greaterThan', value: 2020}
 *   {property: 'title', op: 'like', value: '삼성*'}
 *   {property: 'tags', op: 'containsAny', value: ['a', 'b']}
 *   {property: 'body', length: true, op: 'greaterThan', value: 100}
 *   {property: '_id', op: 'equal', value: '<uuid>'}  (_creationTime, _updateTime too)
 *   {and: [f, ...]}  {or: [f, ...]}  {not: f}
 * mapped onto weaviate.filter.byProperty(...).<op>(value) and Filters.and/or/not.
 */
export type FilterArg = { property: string; op: string; value?: unknown; length?: boolean } | { and: FilterArg[] } | { or: FilterArg[] } | { not: FilterArg };

const COMPARE = ['equal', 'notEqual', 'lessThan', 'lessOrEqual', 'greaterThan', 'greaterOrEqual'] as const;
const PROPERTY_OPS = [...COMPARE, 'like', 'containsAny', 'containsAll', 'containsNone', 'isNull', 'withinGeoRange'] as const;
const ID_OPS = ['equal', 'notEqual', 'containsAny'] as const;
const TIME_OPS = [...COMPARE, 'containsAny'] as const;

const scalar = (v: unknown, at: string): string | number | boolean | Date => {
  if (typeof v === 'string' || typeof v === 'boolean' || v instanceof Date) return v;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  throw new ArgError(at, 'expected a string, number, boolean or date', v);
};

const asDate = (v: unknown, at: string): Date => {
  const d = v instanceof Date ? v : typeof v === 'string' || typeof v === 'number' ? new Date(v) : undefined;
  if (!d || Number.isNaN(d.getTime())) throw new ArgError(at, 'expected a date (ISO string, epoch ms or Date)', v);
  return d;
};

type Target = Record<string, (value: any) => FilterValue>;

export function buildFilter(f: unknown, at: string, depth = 0): FilterValue {
  if (depth > 16) throw new ArgError(at, 'filters nested deeper than 16 levels');
  if (!isObj(f)) throw new ArgError(at, 'expected a filter: {property, op, value} or {and|or: [...]} or {not: filter}', f);
  const keys = Object.keys(f);
  if (keys.length === 1 && (keys[0] === 'and' || keys[0] === 'or')) {
    const list = arr((x, a) => buildFilter(x, a, depth + 1), { min: 1, max: 256 })(f[keys[0]], `${at}.${keys[0]}`);
    return keys[0] === 'and' ? Filters.and(...list) : Filters.or(...list);
  }
  if (keys.length === 1 && keys[0] === 'not') return Filters.not(buildFilter(f.not, `${at}.not`, depth + 1));
  const a = obj({ property: str({ max: 255, re: /^[_A-Za-z][_0-9A-Za-z]*$/, what: 'a property name (or _id, _creationTime, _updateTime)' }), op: str({ max: 32 }), value: (x) => x, length: opt(bool) })(f, at);
  let target: Target;
  let ops: readonly string[];
  let value: unknown = a.value;
  const valueAt = `${at}.value`;
  if (a.property === '_id') {
    target = weaviate.filter.byId() as unknown as Target;
    ops = ID_OPS;
    value = a.op === 'containsAny' ? arr(uuid, { min: 1 })(value, valueAt) : uuid(value, valueAt);
  } else if (a.property === '_creationTime' || a.property === '_updateTime') {
    target = (a.property === '_creationTime' ? weaviate.filter.byCreationTime() : weaviate.filter.byUpdateTime()) as unknown as Target;
    ops = TIME_OPS;
    value = a.op === 'containsAny' ? arr(asDate, { min: 1 })(value, valueAt) : asDate(value, valueAt);
  } else {
    target = weaviate.filter.byProperty(a.property, a.length ?? false) as unknown as Target;
    ops = PROPERTY_OPS;
    switch (a.op) {
      case 'like': value = str({ max: 1024 })(value, valueAt); break;
      case 'isNull': value = bool(value, valueAt); break;
      case 'containsAny':
      case 'containsAll':
      case 'containsNone': value = arr(scalar, { min: 1, max: 1024 })(value, valueAt); break;
      case 'withinGeoRange': value = obj({ latitude: num(-90, 90), longitude: num(-180, 180), distance: num(0) })(value, valueAt); break;
      default: value = scalar(value, valueAt);
    }
  }
  if (!ops.includes(a.op)) throw new ArgError(`${at}.op`, `expected one of ${ops.join(', ')} for ${a.property}`, a.op);
  return target[a.op]!(value);
}

export const filters: V<FilterValue> = (v, at) => buildFilter(v, at);
