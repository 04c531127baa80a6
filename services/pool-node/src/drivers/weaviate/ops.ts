import { ErrorCodes, ShoalError } from '@shoal/protocol';
import weaviate, { type Collection, type ConsistencyLevel } from 'weaviate-client';
import type { Client } from './connection.js';
import {
  arr, bm25Operator, bool, collectionName, consistency, filters, includeVector, int, num, obj, oneOf, opt, properties, propertyName,
  queryProperties, returnMetadata, str, targetVector, tenant, uuid, vectors, type Out, type V,
} from './args.js';

/**
 * The weaviate driver's allow-list: each op names a call of the v3
 * collections API and the exact arguments it takes. Nothing else can run —
 * no arbitrary code, no op outside this table (BAD_REQUEST).
 *
 * Every collection op takes `collection` and optionally `tenant` and
 * `consistencyLevel` (ONE, QUORUM, ALL). Search ops take `limit` (1..10000),
 * `offset`, `filters` (see args.ts), `includeVector` (true or vector names),
 * `returnMetadata` ('all' or [creationTime, updateTime, distance, certainty,
 * score, explainScore, isConsistent]) and `returnProperties` (names).
 */

export interface OpContext {
  client: Client;
  /** A collection handle (cached per connection). */
  collection(name: string, tenant?: string, consistencyLevel?: ConsistencyLevel): Collection;
}

interface OpDef {
  args: V<any>;
  run(ctx: OpContext, a: any): Promise<unknown>;
  /** Does it change data or schema? (for docs and stats) */
  writes: boolean;
}

const def = <A>(args: V<A>, run: (ctx: OpContext, a: A) => Promise<unknown>, writes = false): OpDef => ({ args, run: run as OpDef['run'], writes });

const on = { collection: collectionName, tenant: opt(tenant), consistencyLevel: opt(consistency) };
const returning = { includeVector: opt(includeVector), returnMetadata: opt(returnMetadata), returnProperties: opt(arr(propertyName, { min: 1, max: 1024 })) };
const paging = { limit: opt(int(1, 10_000)), offset: opt(int(0, 100_000)), filters: opt(filters) };
const near = { certainty: opt(num(0, 1)), distance: opt(num()), targetVector: opt(targetVector), autoLimit: opt(int(1, 100)) };
const object = obj({ properties: opt(properties), id: opt(uuid), vectors: opt(vectors) });

type On = Out<typeof on>;
const col = (ctx: OpContext, a: On) => ctx.collection(a.collection, a.tenant, a.consistencyLevel);
/** The search options of `a`, without the fields that are not options. */
function options<T extends Record<string, unknown>>(a: T, ...not: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a)) if (!['collection', 'tenant', 'consistencyLevel', ...not].includes(k)) out[k] = v;
  return out;
}

const DATA_TYPES = ['text', 'text[]', 'int', 'int[]', 'number', 'number[]', 'boolean', 'boolean[]', 'date', 'date[]', 'uuid', 'uuid[]', 'geoCoordinates', 'phoneNumber', 'blob', 'object', 'object[]'] as const;
const TOKENIZATION = ['word', 'lowercase', 'whitespace', 'field', 'trigram', 'gse', 'kagome_kr', 'kagome_ja'] as const;
const DISTANCE = ['cosine', 'dot', 'l2-squared', 'hamming'] as const;

interface PropertyArg {
  name: string; dataType: string; description?: string; tokenization?: string; indexFilterable?: boolean; indexSearchable?: boolean;
  indexRangeFilters?: boolean; skipVectorization?: boolean; vectorizePropertyName?: boolean; nestedProperties?: PropertyArg[];
}
const property: V<PropertyArg> = (v, at) => obj({
  name: propertyName,
  dataType: oneOf(DATA_TYPES),
  description: opt(str({ max: 4096 })),
  tokenization: opt(oneOf(TOKENIZATION)),
  indexFilterable: opt(bool),
  indexSearchable: opt(bool),
  indexRangeFilters: opt(bool),
  skipVectorization: opt(bool),
  vectorizePropertyName: opt(bool),
  nestedProperties: opt(arr(property, { min: 1, max: 1024 })),
})(v, at);

const createArgs = obj({
  name: collectionName,
  description: opt(str({ max: 4096 })),
  properties: opt(arr(property, { max: 1024 })),
  references: opt(arr(obj({ name: propertyName, targetCollection: collectionName }), { max: 256 })),
  vectorIndex: opt(obj({ type: opt(oneOf(['hnsw', 'flat'] as const)), distance: opt(oneOf(DISTANCE)) })),
  invertedIndex: opt(obj({ bm25b: opt(num(0, 1)), bm25k1: opt(num(0)), indexNullState: opt(bool), indexPropertyLength: opt(bool), indexTimestamps: opt(bool) })),
  multiTenancy: opt(obj({ enabled: bool, autoTenantCreation: opt(bool), autoTenantActivation: opt(bool) })),
  replication: opt(obj({ factor: int(1, 64) })),
});

async function create(ctx: OpContext, a: ReturnType<typeof createArgs>): Promise<string> {
  const distanceMetric = a.vectorIndex?.distance;
  const vectorIndexConfig = a.vectorIndex?.type === 'flat'
    ? weaviate.configure.vectorIndex.flat(distanceMetric ? { distanceMetric } : {})
    : weaviate.configure.vectorIndex.hnsw(distanceMetric ? { distanceMetric } : {});
  await ctx.client.collections.create({
    name: a.name,
    description: a.description,
    properties: a.properties as any,
    references: a.references,
    // Vectors are provided by the caller: Shoal runs no vectorizer of its own.
    vectorizers: weaviate.configure.vectors.selfProvided({ vectorIndexConfig }),
    invertedIndex: a.invertedIndex ? weaviate.configure.invertedIndex(a.invertedIndex) : undefined,
    multiTenancy: a.multiTenancy ? weaviate.configure.multiTenancy(a.multiTenancy) : undefined,
    replication: a.replication ? weaviate.configure.replication(a.replication) : undefined,
  } as any);
  return a.name;
}

const fetchArgs = obj({ ...on, ...returning, ...paging, after: opt(uuid), sort: opt(arr(obj({ property: str({ max: 255, re: /^[_A-Za-z][_0-9A-Za-z]*$/, what: 'a property name' }), ascending: opt(bool) }), { min: 1, max: 8 })) });
const moveArgs = obj({ force: num(0, 1), concepts: opt(arr(str({ max: 1024 }), { min: 1, max: 64 })), objects: opt(arr(uuid, { min: 1, max: 64 })) });
const textQuery: V<string | string[]> = (v, at) => (Array.isArray(v) ? arr(str({ max: 4096 }), { min: 1, max: 64 })(v, at) : str({ max: 4096 })(v, at));

export const OPS: Record<string, OpDef> = {
  'collections.listAll': def(obj({}), (ctx) => ctx.client.collections.listAll()),
  'collections.exists': def(obj({ name: collectionName }), (ctx, a) => ctx.client.collections.exists(a.name)),
  'collections.config': def(obj({ name: collectionName }), (ctx, a) => ctx.client.collections.get(a.name).config.get()),
  'collections.create': def(createArgs, create, true),
  'collections.delete': def(obj({ name: collectionName }), (ctx, a) => ctx.client.collections.delete(a.name), true),

  'data.insert': def(obj({ ...on, properties: opt(properties), id: opt(uuid), vectors: opt(vectors) }), (ctx, a) => col(ctx, a).data.insert({ properties: a.properties ?? {}, id: a.id, vectors: a.vectors } as any), true),
  'data.insertMany': def(obj({ ...on, objects: arr(object, { min: 1, max: 10_000 }) }), (ctx, a) => col(ctx, a).data.insertMany(a.objects.map((o) => ({ properties: o.properties ?? {}, id: o.id, vectors: o.vectors })) as any), true),
  'data.update': def(obj({ ...on, id: uuid, properties: opt(properties), vectors: opt(vectors) }), (ctx, a) => col(ctx, a).data.update({ id: a.id, properties: a.properties, vectors: a.vectors } as any), true),
  'data.replace': def(obj({ ...on, id: uuid, properties, vectors: opt(vectors) }), (ctx, a) => col(ctx, a).data.replace({ id: a.id, properties: a.properties, vectors: a.vectors } as any), true),
  'data.deleteById': def(obj({ ...on, id: uuid }), (ctx, a) => col(ctx, a).data.deleteById(a.id), true),
  'data.deleteMany': def(obj({ ...on, where: filters, dryRun: opt(bool), verbose: opt(bool) }), (ctx, a) => col(ctx, a).data.deleteMany(a.where, { dryRun: a.dryRun, verbose: a.verbose }), true),
  // Not the client's data.exists: that is an HTTP HEAD, after which undici closes the connection (a new TCP
  // connection per call). The same question over gRPC, no properties, reuses the HTTP/2 connection.
  'data.exists': def(obj({ ...on, id: uuid }), async (ctx, a) => (await col(ctx, a).query.fetchObjectById(a.id, { returnProperties: [] } as any)) !== null),

  'query.fetchObjects': def(fetchArgs, (ctx, a) => {
    const c = col(ctx, a);
    let sort: any;
    for (const s of a.sort ?? []) sort = sort ? sort.byProperty(s.property, s.ascending ?? true) : c.sort.byProperty(s.property as never, s.ascending ?? true);
    return c.query.fetchObjects({ ...options(a, 'sort'), sort } as any);
  }),
  'query.fetchObjectById': def(obj({ ...on, id: uuid, includeVector: opt(includeVector), returnProperties: opt(arr(propertyName, { min: 1, max: 1024 })) }), async (ctx, a) => (await col(ctx, a).query.fetchObjectById(a.id, options(a, 'id') as any)) ?? null),
  'query.nearVector': def(obj({ ...on, vector: vectors, ...returning, ...paging, ...near }), (ctx, a) => col(ctx, a).query.nearVector(a.vector as any, options(a, 'vector') as any)),
  'query.nearText': def(obj({ ...on, query: textQuery, moveTo: opt(moveArgs), moveAway: opt(moveArgs), ...returning, ...paging, ...near }), (ctx, a) => col(ctx, a).query.nearText(a.query, options(a, 'query') as any)),
  'query.nearObject': def(obj({ ...on, id: uuid, ...returning, ...paging, ...near }), (ctx, a) => col(ctx, a).query.nearObject(a.id, options(a, 'id') as any)),
  'query.hybrid': def(obj({
    ...on, query: str({ max: 4096 }), ...returning, ...paging, autoLimit: opt(int(1, 100)),
    alpha: opt(num(0, 1)), fusionType: opt(oneOf(['Ranked', 'RelativeScore'] as const)), maxVectorDistance: opt(num()),
    queryProperties: opt(queryProperties), vector: opt(vectors), targetVector: opt(targetVector), bm25Operator: opt(bm25Operator),
  }), (ctx, a) => col(ctx, a).query.hybrid(a.query, options(a, 'query') as any)),
  'query.bm25': def(obj({ ...on, query: str({ max: 4096 }), ...returning, ...paging, autoLimit: opt(int(1, 100)), queryProperties: opt(queryProperties), operator: opt(bm25Operator) }), (ctx, a) => col(ctx, a).query.bm25(a.query, options(a, 'query') as any)),

  'aggregate.overAll': def(obj({ ...on, filters: opt(filters) }), (ctx, a) => col(ctx, a).aggregate.overAll({ filters: a.filters })),
  'length': def(obj(on), (ctx, a) => col(ctx, a).length()),
};

export const OP_NAMES: readonly string[] = Object.keys(OPS);

/** Validate an op and its arguments; BAD_REQUEST with the failing path otherwise. */
export function parseOp(op: string, args: unknown): { def: OpDef; args: unknown } {
  const d = Object.hasOwn(OPS, op) ? OPS[op] : undefined;
  if (!d) throw new ShoalError(ErrorCodes.BAD_REQUEST, `weaviate driver has no op ${JSON.stringify(op)}; ops: ${OP_NAMES.join(', ')}`, { details: { op, retryable: false } });
  try {
    return { def: d, args: d.args(args, '') };
  } catch (err) {
    if (err instanceof ShoalError) throw new ShoalError(err.code, `${op}: ${err.message}`, { details: { op, ...err.details } });
    throw new ShoalError(ErrorCodes.BAD_REQUEST, `${op}: ${(err as Error).message}`, { details: { op, retryable: false } });
  }
}
