/**
 * gRPC side of the stand-in: `weaviate.v1.Weaviate` (Search, BatchObjects,
 * BatchDelete, Aggregate) and `grpc.health.v1.Health`, on the client's own
 * generated definitions served by nice-grpc.
 *
 * Health answers SERVING for any service name: weaviate-client checks the
 * service '/grpc.health.v1.Health/Check' at connect, which a stock health
 * server answers NOT_FOUND (and connect fails).
 */
import { ServerError, Status } from 'nice-grpc';
import { certaintyOf, distance, keywordScore, matches, Store, WeaviateError, type FilterMsg, type StoredObject } from './store.js';
import { distanceOf, type ClassDef, type PropertyDef } from './schema.js';
import type {
  AggregateReply, AggregateRequest, BatchDeleteReply, BatchDeleteRequest, BatchObject, BatchObjectsReply, BatchObjectsRequest,
  ObjectPropertiesValue, Properties, SearchReply, SearchRequest, SearchResult, Value, Vectors,
} from './proto.js';
import { SERVING } from './proto.js';

type DeepPartial<T> = T extends (infer U)[] ? DeepPartial<U>[] : T extends Uint8Array ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/** Every call passes through this first: slow and error faults, API key. */
export type Gate = (kind: 'data' | 'health', authorization: string | undefined) => Promise<void>;

const FUSION_RANKED = 1;
const SEARCH_OP_AND = 2;
const VECTOR_MULTI = 2;

// ---- bytes ---------------------------------------------------------------------

export function f32(bytes: Uint8Array): number[] {
  const buf = Buffer.from(bytes);
  const out: number[] = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

function f32Bytes(v: number[]): Uint8Array {
  const buf = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => buf.writeFloatLE(x, i * 4));
  return buf;
}

function f64Bytes(v: number[]): Uint8Array {
  const buf = Buffer.alloc(v.length * 8);
  v.forEach((x, i) => buf.writeDoubleLE(x, i * 8));
  return buf;
}

function i64Bytes(v: number[]): Uint8Array {
  const buf = Buffer.alloc(v.length * 8);
  v.forEach((x, i) => buf.writeBigInt64LE(BigInt(Math.trunc(x)), i * 8));
  return buf;
}

function f64s(bytes: Uint8Array): number[] {
  const buf = Buffer.from(bytes);
  const out: number[] = [];
  for (let i = 0; i + 8 <= buf.length; i += 8) out.push(buf.readDoubleLE(i));
  return out;
}

function uuidBytes(id: string): Uint8Array {
  return Buffer.from(id.replace(/-/g, ''), 'hex');
}

/** The first vector of a `Vectors` list entry (a multi-vector's first row is enough for the stand-in). */
function vectorOfEntry(v: Vectors): number[] {
  if (v.type === VECTOR_MULTI) {
    const dim = Buffer.from(v.vectorBytes).readUInt16LE(0);
    return f32(v.vectorBytes.slice(2, 2 + dim * 4));
  }
  return f32(v.vectorBytes);
}

// ---- values --------------------------------------------------------------------

function toValue(v: unknown, dataType: string | undefined, nested?: PropertyDef[]): DeepPartial<Value> {
  if (v === null || v === undefined) return { nullValue: 0 };
  const dt = dataType ?? '';
  if (Array.isArray(v)) {
    if (dt === 'int[]') return { listValue: { intValues: { values: i64Bytes(v as number[]) } } };
    if (dt === 'number[]' || (dt === '' && typeof v[0] === 'number')) return { listValue: { numberValues: { values: f64Bytes(v as number[]) } } };
    if (dt === 'boolean[]' || (dt === '' && typeof v[0] === 'boolean')) return { listValue: { boolValues: { values: v as boolean[] } } };
    if (dt === 'date[]') return { listValue: { dateValues: { values: (v as unknown[]).map(String) } } };
    if (dt === 'uuid[]') return { listValue: { uuidValues: { values: (v as unknown[]).map(String) } } };
    if (dt === 'object[]' || (dt === '' && typeof v[0] === 'object')) return { listValue: { objectValues: { values: (v as Record<string, unknown>[]).map((o) => toProperties(o, nested)) } } };
    return { listValue: { textValues: { values: (v as unknown[]).map(String) } } };
  }
  switch (dt) {
    case 'int': return { intValue: Number(v) };
    case 'number': return { numberValue: Number(v) };
    case 'boolean': return { boolValue: Boolean(v) };
    case 'date': return { dateValue: v instanceof Date ? v.toISOString() : String(v) };
    case 'uuid': return { uuidValue: String(v) };
    case 'geoCoordinates': return { geoValue: v as { latitude: number; longitude: number } };
    case 'phoneNumber': return { phoneValue: v as Record<string, unknown> };
    case 'blob': return { blobValue: String(v) };
    case 'object': return { objectValue: toProperties(v as Record<string, unknown>, nested) };
    default: break;
  }
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'object') return { objectValue: toProperties(v as Record<string, unknown>) };
  return { textValue: String(v) };
}

function toProperties(o: Record<string, unknown>, defs?: PropertyDef[], only?: Set<string>): DeepPartial<Properties> {
  const fields: Record<string, DeepPartial<Value>> = {};
  for (const [k, v] of Object.entries(o)) {
    if (only && !only.has(k)) continue;
    const def = defs?.find((p) => p.name === k);
    fields[k] = toValue(v, def?.dataType[0], def?.nestedProperties);
  }
  return { fields } as DeepPartial<Properties>;
}

/** BatchObject properties (a Struct plus typed arrays and nested objects) → plain values. */
function fromBatchProperties(p: ObjectPropertiesValue | undefined): Record<string, unknown> {
  if (!p) return {};
  const out: Record<string, unknown> = { ...(p.nonRefProperties ?? {}) };
  for (const a of p.numberArrayProperties) out[a.propName] = a.valuesBytes.length > 0 ? f64s(a.valuesBytes) : a.values;
  for (const a of p.intArrayProperties) out[a.propName] = a.values;
  for (const a of p.textArrayProperties) out[a.propName] = a.values;
  for (const a of p.booleanArrayProperties) out[a.propName] = a.values;
  for (const o of p.objectProperties) out[o.propName] = fromBatchProperties(o.value);
  for (const o of p.objectArrayProperties) out[o.propName] = o.values.map((x) => fromBatchProperties(x));
  for (const e of p.emptyListProps) out[e] = [];
  return out;
}

function batchVectors(o: BatchObject, cls: ClassDef | undefined): Record<string, number[]> {
  const def = defaultVectorName(cls);
  const out: Record<string, number[]> = {};
  if (o.vectorBytes.length > 0) out[def] = f32(o.vectorBytes);
  else if (o.vector.length > 0) out[def] = o.vector;
  for (const v of o.vectors) out[v.name || def] = vectorOfEntry(v);
  return out;
}

export function defaultVectorName(cls: ClassDef | undefined): string {
  return cls?.vectorConfig ? (Object.keys(cls.vectorConfig)[0] ?? 'default') : 'default';
}

// ---- search --------------------------------------------------------------------

interface Hit {
  obj: StoredObject;
  distance?: number;
  score?: number;
  explain?: string;
}

interface QueryVector {
  target: string;
  vector: number[];
}

/** The query vector of a NearVector / Hybrid message, in any of the shapes the client sends. */
function queryVector(m: { vector?: number[]; vectorBytes?: Uint8Array; vectors?: Vectors[]; targetVectors?: string[]; targets?: { targetVectors: string[] } | undefined; vectorForTargets?: { name: string; vectorBytes: Uint8Array; vectors: Vectors[] }[]; vectorPerTarget?: Record<string, Uint8Array> }, cls: ClassDef): QueryVector | undefined {
  const target = m.targets?.targetVectors[0] ?? m.targetVectors?.[0] ?? defaultVectorName(cls);
  if (m.vectorForTargets && m.vectorForTargets.length > 0) {
    const vt = m.vectorForTargets[0]!;
    return { target: vt.name, vector: vt.vectorBytes.length > 0 ? f32(vt.vectorBytes) : vectorOfEntry(vt.vectors[0]!) };
  }
  if (m.vectorPerTarget && Object.keys(m.vectorPerTarget).length > 0) {
    const [name, bytes] = Object.entries(m.vectorPerTarget)[0]!;
    return { target: name, vector: f32(bytes) };
  }
  if (m.vectors && m.vectors.length > 0) return { target, vector: vectorOfEntry(m.vectors[0]!) };
  if (m.vectorBytes && m.vectorBytes.length > 0) return { target, vector: f32(m.vectorBytes) };
  if (m.vector && m.vector.length > 0) return { target, vector: m.vector };
  return undefined;
}

function byVector(cls: ClassDef, candidates: StoredObject[], q: QueryVector, maxDistance?: number, minCertainty?: number): Hit[] {
  const metric = distanceOf(cls, q.target);
  const hits: Hit[] = [];
  for (const obj of candidates) {
    const v = obj.vectors[q.target];
    if (!v) continue;
    const d = distance(metric, q.vector, v);
    if (maxDistance !== undefined && d > maxDistance) continue;
    if (minCertainty !== undefined && certaintyOf(d) < minCertainty) continue;
    hits.push({ obj, distance: d });
  }
  return hits.sort((a, b) => a.distance! - b.distance!);
}

function normalise(values: Map<string, number>, higherIsBetter: boolean): Map<string, number> {
  const xs = [...values.values()];
  const lo = Math.min(...xs), hi = Math.max(...xs);
  const out = new Map<string, number>();
  for (const [k, v] of values) out.set(k, hi === lo ? 1 : higherIsBetter ? (v - lo) / (hi - lo) : (hi - v) / (hi - lo));
  return out;
}


function fail(code: Status, msg: string): never {
  throw new ServerError(code, msg);
}

function classOf(store: Store, name: string): ClassDef {
  return store.getClass(name) ?? fail(Status.UNKNOWN, `could not find class ${name} in schema`);
}

function run(store: Store, req: SearchRequest): Hit[] {
  const cls = classOf(store, req.collection);
  if (req.groupBy) fail(Status.UNIMPLEMENTED, 'groupBy is not supported by the weaviate stand-in');
  if (req.nearText || req.nearImage || req.nearAudio || req.nearVideo || req.nearDepth || req.nearThermal || req.nearImu) {
    fail(Status.UNKNOWN, `explorer: get class: vectorize params: could not vectorize input for collection ${cls.class}: no vectorizer module is configured (the stand-in has none; use nearVector)`);
  }
  const candidates = [...store.objectsOf(cls.class).values()].filter((o) => matches(req.filters as FilterMsg | undefined, o));
  if (req.nearVector) {
    const q = queryVector(req.nearVector, cls) ?? fail(Status.INVALID_ARGUMENT, 'nearVector: no vector given');
    return byVector(cls, candidates, q, req.nearVector.distance, req.nearVector.certainty);
  }
  if (req.nearObject) {
    const src = store.objectsOf(cls.class).get(req.nearObject.id.toLowerCase()) ?? fail(Status.UNKNOWN, `nearObject: no object with id ${req.nearObject.id}`);
    const target = req.nearObject.targets?.targetVectors[0] ?? req.nearObject.targetVectors[0] ?? defaultVectorName(cls);
    const vector = src.vectors[target] ?? fail(Status.UNKNOWN, `nearObject: object ${src.id} has no vector ${target}`);
    return byVector(cls, candidates, { target, vector }, req.nearObject.distance, req.nearObject.certainty);
  }
  if (req.bm25Search) {
    const all = req.bm25Search.searchOperator?.operator === SEARCH_OP_AND;
    const hits: Hit[] = [];
    for (const obj of candidates) {
      const s = keywordScore(cls, obj, req.bm25Search.query, req.bm25Search.properties, all, req.bm25Search.searchOperator?.minimumOrTokensMatch ?? 1);
      if (s) hits.push({ obj, score: s.score, explain: s.explain });
    }
    return hits.sort((a, b) => b.score! - a.score!);
  }
  if (req.hybridSearch) {
    const h = req.hybridSearch;
    const all = h.bm25SearchOperator?.operator === SEARCH_OP_AND;
    const kw = new Map<string, number>();
    const explain = new Map<string, string>();
    if (h.query) {
      for (const obj of candidates) {
        const s = keywordScore(cls, obj, h.query, h.properties, all, h.bm25SearchOperator?.minimumOrTokensMatch ?? 1);
        if (s) { kw.set(obj.id, s.score); explain.set(obj.id, s.explain); }
      }
    }
    const q = h.nearVector ? queryVector({ ...h.nearVector, targets: h.nearVector.targets ?? h.targets }, cls) : queryVector(h, cls);
    if (!q && h.nearText) fail(Status.UNKNOWN, `hybrid: could not vectorize input for collection ${cls.class}: no vectorizer module is configured`);
    const vec = new Map<string, number>();
    if (q) for (const hit of byVector(cls, candidates, q, h.vectorDistance ?? h.nearVector?.distance)) vec.set(hit.obj.id, hit.distance!);
    // No vector and no vectorizer: the keyword half alone (the real server would need a vectorizer).
    const alpha = q ? h.alpha : 0;
    const byId = new Map(candidates.map((o) => [o.id, o]));
    const fused = new Map<string, number>();
    if (h.fusionType === FUSION_RANKED) {
      const rank = (m: Map<string, number>, desc: boolean) => [...m.entries()].sort((a, b) => (desc ? b[1] - a[1] : a[1] - b[1])).map(([id]) => id);
      rank(kw, true).forEach((id, i) => fused.set(id, (fused.get(id) ?? 0) + (1 - alpha) / (60 + i)));
      rank(vec, false).forEach((id, i) => fused.set(id, (fused.get(id) ?? 0) + alpha / (60 + i)));
    } else {
      const nk = kw.size ? normalise(kw, true) : new Map<string, number>();
      const nv = vec.size ? normalise(vec, false) : new Map<string, number>();
      for (const [id, s] of nk) fused.set(id, (fused.get(id) ?? 0) + (1 - alpha) * s);
      for (const [id, s] of nv) fused.set(id, (fused.get(id) ?? 0) + alpha * s);
    }
    return [...fused.entries()]
      .filter(([, s]) => s > 0 || alpha === 0)
      .sort((a, b) => b[1] - a[1])
      .map(([id, score]) => ({ obj: byId.get(id)!, score, explain: `(hybrid) alpha=${alpha} keyword ${explain.get(id) ?? '-'} vector ${vec.has(id) ? vec.get(id)!.toFixed(6) : '-'}` }));
  }
  // Plain fetch: sorted as asked, else by id (Weaviate's cursor order).
  let list = candidates;
  if (req.after) list = list.filter((o) => o.id > req.after.toLowerCase());
  if (req.sortBy.length > 0) {
    list = [...list].sort((a, b) => {
      for (const s of req.sortBy) {
        const k = s.path[0]!;
        const x = a.properties[k] as number | string | undefined, y = b.properties[k] as number | string | undefined;
        if (x === y) continue;
        if (x === undefined) return 1;
        if (y === undefined) return -1;
        return (x < y ? -1 : 1) * (s.ascending ? 1 : -1);
      }
      return 0;
    });
  } else {
    list = [...list].sort((a, b) => (a.id < b.id ? -1 : 1));
  }
  return list.map((obj) => ({ obj }));
}

function result(cls: ClassDef, hit: Hit, req: SearchRequest): DeepPartial<SearchResult> {
  const m = req.metadata;
  const o = hit.obj;
  const metric = distanceOf(cls, '');
  const wantVectors = m?.vector ? Object.keys(o.vectors) : m?.vectors ?? [];
  const p = req.properties;
  // No properties message: all of them (what the client sends when returnProperties is omitted); else as listed.
  const all = !p || p.returnAllNonrefProperties;
  const only = all ? undefined : new Set([...p!.nonRefProperties, ...p!.objectProperties.map((x) => x.propName)]);
  return {
    metadata: {
      id: o.id,
      vectors: wantVectors.filter((n) => o.vectors[n]).map((n) => ({ name: n, index: 0, vectorBytes: f32Bytes(o.vectors[n]!), type: 1 })),
      ...(m?.creationTimeUnix ? { creationTimeUnix: o.created, creationTimeUnixPresent: true } : {}),
      ...(m?.lastUpdateTimeUnix ? { lastUpdateTimeUnix: o.updated, lastUpdateTimeUnixPresent: true } : {}),
      ...(m?.distance && hit.distance !== undefined ? { distance: hit.distance, distancePresent: true } : {}),
      ...(m?.certainty && hit.distance !== undefined && metric === 'cosine' ? { certainty: certaintyOf(hit.distance), certaintyPresent: true } : {}),
      ...(m?.score && hit.score !== undefined ? { score: hit.score, scorePresent: true } : {}),
      ...(m?.explainScore && hit.explain !== undefined ? { explainScore: hit.explain, explainScorePresent: true } : {}),
      ...(m?.isConsistent ? { isConsistent: true, isConsistentPresent: true } : {}),
    },
    properties: {
      nonRefProps: toProperties(o.properties, cls.properties, only),
      refProps: [],
      refPropsRequested: (p?.refProperties.length ?? 0) > 0,
      targetCollection: cls.class,
    },
  };
}

/** Weaviate's QUERY_DEFAULTS_LIMIT when a request leaves the limit at 0. */
export const DEFAULT_LIMIT = 10;

/**
 * What a search carried on the wire and what was answered, as the stand-in
 * decoded it: tests assert on what Shoal sends and how it decodes the reply,
 * not on the order this stand-in's own ranking invents.
 */
export interface SearchRecord {
  collection: string;
  limit: number;
  kind: 'hybrid' | 'nearVector' | 'bm25' | 'fetch' | 'other';
  query?: string;
  alpha?: number;
  vector?: number[];
  returned: { id: string; score?: number; distance?: number }[];
}
/** The last searches served (oldest first), bounded. */
export const searchLog: SearchRecord[] = [];

export function search(store: Store, req: SearchRequest): DeepPartial<SearchReply> {
  const t0 = performance.now();
  const cls = classOf(store, req.collection);
  const hits = run(store, req);
  const limit = req.limit > 0 ? req.limit : DEFAULT_LIMIT;
  const page = hits.slice(req.offset, req.offset + limit);
  const results = page.map((h) => result(cls, h, req));
  const kind = req.hybridSearch ? 'hybrid' : req.nearVector ? 'nearVector' : req.bm25Search ? 'bm25' : 'fetch';
  const q = req.nearVector ? queryVector(req.nearVector, cls) : req.hybridSearch ? queryVector(req.hybridSearch, cls) : undefined;
  searchLog.push({
    collection: req.collection, limit: req.limit, kind,
    ...(req.hybridSearch ? { query: req.hybridSearch.query, alpha: req.hybridSearch.alpha } : req.bm25Search ? { query: req.bm25Search.query } : {}),
    ...(q ? { vector: [...q.vector] } : {}),
    returned: page.map((h) => ({ id: h.obj.id, ...(h.score !== undefined ? { score: h.score } : {}), ...(h.distance !== undefined ? { distance: h.distance } : {}) })),
  });
  if (searchLog.length > 100) searchLog.shift();
  return { took: (performance.now() - t0) / 1000, results, groupByResults: [] };
}

export function batchObjects(store: Store, req: BatchObjectsRequest): DeepPartial<BatchObjectsReply> {
  const t0 = performance.now();
  const errors: { index: number; error: string }[] = [];
  req.objects.forEach((o, index) => {
    try {
      const cls = store.ensureClass(o.collection);
      const id = (o.uuid || crypto.randomUUID()).toLowerCase();
      const exists = store.objectsOf(cls.class).has(id);
      store.put(cls.class, { id, properties: fromBatchProperties(o.properties), vectors: batchVectors(o, cls), tenant: o.tenant }, exists ? 'replace' : 'insert');
    } catch (err) {
      errors.push({ index, error: (err as Error).message });
    }
  });
  return { took: (performance.now() - t0) / 1000, errors };
}

export function batchDelete(store: Store, req: BatchDeleteRequest): DeepPartial<BatchDeleteReply> {
  const t0 = performance.now();
  const cls = classOf(store, req.collection);
  const objs = store.objectsOf(cls.class);
  if (!req.filters) fail(Status.INVALID_ARGUMENT, 'batch delete: a filter is required');
  const hit = [...objs.values()].filter((o) => matches(req.filters as FilterMsg, o));
  if (!req.dryRun) for (const o of hit) objs.delete(o.id);
  return {
    took: (performance.now() - t0) / 1000,
    matches: hit.length,
    successful: req.dryRun ? 0 : hit.length,
    failed: 0,
    objects: req.verbose ? hit.map((o) => ({ uuid: uuidBytes(o.id), successful: !req.dryRun })) : [],
  };
}

export function aggregate(store: Store, req: AggregateRequest): DeepPartial<AggregateReply> {
  const t0 = performance.now();
  const cls = classOf(store, req.collection);
  if (req.groupBy) fail(Status.UNIMPLEMENTED, 'aggregate groupBy is not supported by the weaviate stand-in');
  const n = [...store.objectsOf(cls.class).values()].filter((o) => matches(req.filters as FilterMsg | undefined, o)).length;
  return { took: (performance.now() - t0) / 1000, singleResult: { objectsCount: req.objectsCount ? n : undefined, aggregations: { aggregations: [] } } };
}

/** Errors the store throws become gRPC statuses the client maps as Weaviate's would be. */
function guarded<Req, Res>(gate: Gate, fn: (req: Req) => Res) {
  return async (req: Req, ctx: { metadata: { get(k: string): unknown } }): Promise<Res> => {
    const auth = ctx.metadata.get('authorization');
    await gate('data', typeof auth === 'string' ? auth : undefined);
    try {
      return fn(req);
    } catch (err) {
      if (err instanceof ServerError) throw err;
      if (err instanceof WeaviateError) throw new ServerError(err.status === 404 ? Status.NOT_FOUND : Status.INVALID_ARGUMENT, err.message);
      throw new ServerError(Status.INTERNAL, (err as Error).message);
    }
  };
}

const unimplemented = (what: string) => async () => {
  throw new ServerError(Status.UNIMPLEMENTED, `${what} is not implemented by the weaviate stand-in`);
};

export function weaviateService(store: Store, gate: Gate) {
  return {
    search: guarded(gate, (r: SearchRequest) => search(store, r)),
    batchObjects: guarded(gate, (r: BatchObjectsRequest) => batchObjects(store, r)),
    batchDelete: guarded(gate, (r: BatchDeleteRequest) => batchDelete(store, r)),
    aggregate: guarded(gate, (r: AggregateRequest) => aggregate(store, r)),
    batchReferences: unimplemented('BatchReferences'),
    tenantsGet: unimplemented('TenantsGet'),
    // eslint-disable-next-line require-yield
    async *batchStream(): AsyncGenerator<never> {
      throw new ServerError(Status.UNIMPLEMENTED, 'BatchStream is not implemented by the weaviate stand-in');
    },
  };
}

export function healthService(gate: Gate) {
  return {
    async check(_req: { service: string }, ctx: { metadata: { get(k: string): unknown } }) {
      const auth = ctx.metadata.get('authorization');
      await gate('health', typeof auth === 'string' ? auth : undefined);
      return { status: SERVING };
    },
    async *watch() {
      yield { status: SERVING };
    },
  };
}
