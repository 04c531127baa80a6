/**
 * The stand-in's data: classes and objects in memory, with the search
 * semantics weaviate-client needs to see realistic answers — brute-force
 * vector distance, keyword scoring by term overlap, hybrid fusion, filters.
 * Nothing here knows HTTP or gRPC.
 */
import { randomUUID } from 'node:crypto';
import { inferDataType, withDefaults, type ClassDef } from './schema.js';

export interface StoredObject {
  id: string;
  class: string;
  tenant: string;
  properties: Record<string, unknown>;
  /** Vector per name; a class without named vectors keeps its one vector as `default`. */
  vectors: Record<string, number[]>;
  created: number;
  updated: number;
}

export class WeaviateError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Collections are case-insensitive on their first letter, as in Weaviate (`article` is `Article`). */
export const className = (n: string) => (n ? n[0]!.toUpperCase() + n.slice(1) : n);

export class Store {
  readonly classes = new Map<string, ClassDef>();
  readonly objects = new Map<string, Map<string, StoredObject>>();

  clear(): void {
    this.classes.clear();
    this.objects.clear();
  }

  createClass(input: Record<string, unknown>): ClassDef {
    if (typeof input.class !== 'string' || !/^[A-Za-z][_0-9A-Za-z]*$/.test(input.class)) {
      throw new WeaviateError(422, `class name "${String(input.class)}" is not valid: must match /^[A-Z][_0-9A-Za-z]*$/`);
    }
    const name = className(input.class);
    if (this.classes.has(name)) throw new WeaviateError(422, `class name ${name} already exists`);
    const cls = withDefaults({ ...input, class: name });
    this.classes.set(name, cls);
    this.objects.set(name, new Map());
    return cls;
  }

  getClass(name: string): ClassDef | undefined {
    return this.classes.get(className(name));
  }

  deleteClass(name: string): void {
    this.classes.delete(className(name));
    this.objects.delete(className(name));
  }

  /** The class, created with auto-schema if missing (Weaviate's default AUTOSCHEMA_ENABLED=true). */
  ensureClass(name: string): ClassDef {
    return this.getClass(name) ?? this.createClass({ class: name });
  }

  objectsOf(name: string): Map<string, StoredObject> {
    const m = this.objects.get(className(name));
    if (!m) throw new WeaviateError(404, `class ${className(name)} not found`);
    return m;
  }

  /** Insert or replace; unknown properties are added to the class (auto-schema). */
  put(name: string, obj: { id?: string; properties?: Record<string, unknown>; vectors?: Record<string, number[]>; tenant?: string }, mode: 'insert' | 'replace' | 'merge'): StoredObject {
    const cls = this.ensureClass(name);
    const objs = this.objectsOf(cls.class);
    const id = (obj.id ?? randomUUID()).toLowerCase();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) throw new WeaviateError(422, `id '${id}' is not a valid uuid`);
    const existing = objs.get(id);
    if (mode === 'insert' && existing) throw new WeaviateError(422, `id '${id}' already exists`);
    if (mode !== 'insert' && !existing) throw new WeaviateError(404, `no object with id '${id}'`);
    const props = obj.properties ?? {};
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined) continue;
      if (!cls.properties.some((p) => p.name === k)) {
        const dataType = inferDataType(v);
        cls.properties.push({ name: k, dataType: [dataType], indexFilterable: true, indexSearchable: dataType.startsWith('text'), indexRangeFilters: false, ...(dataType.startsWith('text') ? { tokenization: 'word' } : {}) });
      }
    }
    for (const [name, vec] of Object.entries(obj.vectors ?? {})) {
      for (const other of objs.values()) {
        const o = other.vectors[name];
        if (o && other.id !== id) {
          if (o.length !== vec.length) throw new WeaviateError(422, `new node has a vector with length ${vec.length}. Existing nodes have vectors with length ${o.length}`);
          break;
        }
      }
    }
    const now = Date.now();
    const stored: StoredObject = mode === 'merge' && existing
      ? { ...existing, properties: { ...existing.properties, ...props }, vectors: { ...existing.vectors, ...(obj.vectors ?? {}) }, updated: now }
      : { id, class: cls.class, tenant: obj.tenant ?? '', properties: { ...props }, vectors: obj.vectors ?? {}, created: existing?.created ?? now, updated: now };
    objs.set(id, stored);
    return stored;
  }
}

// ---- vectors ---------------------------------------------------------------

export function distance(metric: string, a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  if (a.length !== b.length) throw new WeaviateError(422, `vector lengths don't match: ${a.length} vs ${b.length}`);
  let dot = 0, na = 0, nb = 0, l2 = 0, l1 = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i]!, y = b[i]!;
    dot += x * y; na += x * x; nb += y * y; l2 += (x - y) ** 2; l1 += Math.abs(x - y);
  }
  switch (metric) {
    case 'dot': return -dot;
    case 'l2-squared': return l2;
    case 'manhattan': return l1;
    default: return na === 0 || nb === 0 ? 1 : 1 - dot / Math.sqrt(na * nb);
  }
}

/** Weaviate reports certainty only for cosine: 1 - d/2. */
export const certaintyOf = (d: number) => 1 - d / 2;

// ---- keywords ----------------------------------------------------------------

export function tokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

function textOf(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.filter((x) => typeof x === 'string').join(' ');
  return '';
}

/**
 * Keyword score by term overlap: for each query term, its count in each
 * searched property (weighted, `title^2`), saturated like BM25 (tf/(tf+k1)).
 * `properties` empty = every searchable text property. Null when no term
 * matches (or, with `all`, when one does not).
 */
export function keywordScore(cls: ClassDef, obj: StoredObject, query: string, properties: string[], all: boolean, minMatch = 1): { score: number; explain: string } | null {
  const terms = [...new Set(tokens(query))];
  if (terms.length === 0) return null;
  const fields = properties.length > 0
    ? properties.map((p) => { const [name, w] = p.split('^'); return { name: name!, weight: w ? Number(w) : 1 }; })
    : cls.properties.filter((p) => p.dataType[0] === 'text' || p.dataType[0] === 'text[]').map((p) => ({ name: p.name, weight: 1 }));
  let score = 0;
  let matched = 0;
  const explain: string[] = [];
  for (const t of terms) {
    let termScore = 0;
    for (const f of fields) {
      const tf = tokens(textOf(obj.properties[f.name])).filter((x) => x === t).length;
      if (tf > 0) termScore += f.weight * (tf * 2.2) / (tf + 1.2);
    }
    if (termScore > 0) { matched++; explain.push(`${t}:${termScore.toFixed(4)}`); }
    score += termScore;
  }
  if (matched === 0 || (all && matched < terms.length) || matched < minMatch) return null;
  return { score, explain: `BM25F_${explain.join(',')}` };
}

// ---- filters -----------------------------------------------------------------

/** The gRPC `Filters` message, as the generated code decodes it. */
export interface FilterMsg {
  operator: number;
  on: string[];
  filters: FilterMsg[];
  valueText?: string | undefined;
  valueInt?: number | undefined;
  valueBoolean?: boolean | undefined;
  valueNumber?: number | undefined;
  valueTextArray?: { values: string[] } | undefined;
  valueIntArray?: { values: number[] } | undefined;
  valueBooleanArray?: { values: boolean[] } | undefined;
  valueNumberArray?: { values: number[] } | undefined;
  valueGeo?: { latitude: number; longitude: number; distance: number } | undefined;
  target?: { property?: string | undefined } | undefined;
}

// Filters_Operator of weaviate.v1
const OP = { EQUAL: 1, NOT_EQUAL: 2, GT: 3, GTE: 4, LT: 5, LTE: 6, AND: 7, OR: 8, GEO: 9, LIKE: 10, IS_NULL: 11, ANY: 12, ALL: 13, NONE: 14, NOT: 15 } as const;

function valueOf(f: FilterMsg): unknown {
  return f.valueText ?? f.valueInt ?? f.valueNumber ?? f.valueBoolean ?? f.valueTextArray?.values ?? f.valueIntArray?.values ?? f.valueNumberArray?.values ?? f.valueBooleanArray?.values ?? f.valueGeo;
}

function fieldOf(obj: StoredObject, path: string): unknown {
  if (path === '_id') return obj.id;
  if (path === '_creationTimeUnix') return obj.created;
  if (path === '_lastUpdateTimeUnix') return obj.updated;
  return obj.properties[path];
}

const comparable = (x: unknown): number | string | boolean | undefined => {
  if (typeof x === 'number' || typeof x === 'boolean') return x;
  if (typeof x === 'string') {
    if (/^\d{4}-\d{2}-\d{2}T/.test(x)) { const t = Date.parse(x); if (!Number.isNaN(t)) return t; }
    return x;
  }
  return undefined;
};

function cmp(a: unknown, b: unknown): number | undefined {
  const x = comparable(a), y = comparable(b);
  if (x === undefined || y === undefined) return undefined;
  if (typeof x === 'string' && typeof y === 'string') return x.toLowerCase() < y.toLowerCase() ? -1 : x.toLowerCase() > y.toLowerCase() ? 1 : 0;
  if (typeof x === 'number' && typeof y === 'number') return x - y;
  if (typeof x === 'boolean' && typeof y === 'boolean') return Number(x) - Number(y);
  // A date property compared with an ISO text filter value.
  return undefined;
}

function equal(a: unknown, b: unknown): boolean {
  if (typeof a === 'string' && typeof b === 'string') {
    // `word` tokenization: every token of the filter value is a token of the property.
    const ta = tokens(a), tb = tokens(b);
    return a.toLowerCase() === b.toLowerCase() || (tb.length > 0 && tb.every((t) => ta.includes(t)));
  }
  return cmp(a, b) === 0;
}

export function matches(f: FilterMsg | undefined, obj: StoredObject): boolean {
  if (!f) return true;
  switch (f.operator) {
    case OP.AND: return f.filters.every((x) => matches(x, obj));
    case OP.OR: return f.filters.some((x) => matches(x, obj));
    case OP.NOT: return !matches(f.filters[0], obj);
    default: break;
  }
  const path = f.target?.property ?? f.on[0];
  if (!path) throw new WeaviateError(422, 'filter without a target property');
  const field = fieldOf(obj, path);
  const want = valueOf(f);
  const each = (pred: (x: unknown) => boolean) => (Array.isArray(field) ? field.some(pred) : pred(field));
  switch (f.operator) {
    case OP.EQUAL: return each((x) => equal(x, want));
    case OP.NOT_EQUAL: return !each((x) => equal(x, want));
    case OP.GT: return each((x) => (cmp(x, want) ?? -1) > 0);
    case OP.GTE: return each((x) => (cmp(x, want) ?? -1) >= 0);
    case OP.LT: return each((x) => (cmp(x, want) ?? 1) < 0);
    case OP.LTE: return each((x) => (cmp(x, want) ?? 1) <= 0);
    case OP.LIKE: {
      const re = new RegExp(`^${String(want).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
      return each((x) => typeof x === 'string' && (re.test(x) || tokens(x).some((t) => re.test(t))));
    }
    case OP.IS_NULL: return (field === undefined || field === null) === (want !== false);
    case OP.ANY: return Array.isArray(want) && want.some((w) => each((x) => equal(x, w)));
    case OP.ALL: return Array.isArray(want) && want.every((w) => each((x) => equal(x, w)));
    case OP.NONE: return Array.isArray(want) && !want.some((w) => each((x) => equal(x, w)));
    case OP.GEO: {
      const g = field as { latitude?: number; longitude?: number } | undefined;
      const w = want as { latitude: number; longitude: number; distance: number } | undefined;
      if (!g || g.latitude === undefined || g.longitude === undefined || !w) return false;
      const rad = Math.PI / 180;
      const dLat = (w.latitude - g.latitude) * rad, dLon = (w.longitude - g.longitude) * rad;
      const h = Math.sin(dLat / 2) ** 2 + Math.cos(g.latitude * rad) * Math.cos(w.latitude * rad) * Math.sin(dLon / 2) ** 2;
      return 2 * 6371000 * Math.asin(Math.sqrt(h)) <= w.distance;
    }
    default: throw new WeaviateError(422, `filter operator ${f.operator} is not supported by the stand-in`);
  }
}
