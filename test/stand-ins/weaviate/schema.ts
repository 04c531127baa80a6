/**
 * Class definitions as Weaviate 1.30 returns them from /v1/schema: every
 * section populated with the server's defaults. weaviate-client v3 refuses a
 * class with a missing section (`collections.listAll()` and `config.get()`
 * throw WeaviateDeserializationError), so the stand-in fills them all in.
 */

export interface PropertyDef {
  name: string;
  dataType: string[];
  description?: string;
  indexFilterable?: boolean;
  indexSearchable?: boolean;
  indexRangeFilters?: boolean;
  tokenization?: string;
  nestedProperties?: PropertyDef[];
  moduleConfig?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface ClassDef {
  class: string;
  description?: string;
  properties: PropertyDef[];
  vectorizer?: string;
  vectorIndexType?: string;
  vectorIndexConfig?: Record<string, unknown>;
  vectorConfig?: Record<string, { vectorizer: Record<string, unknown>; vectorIndexType: string; vectorIndexConfig: Record<string, unknown> }>;
  invertedIndexConfig: Record<string, unknown>;
  multiTenancyConfig: Record<string, unknown>;
  replicationConfig: Record<string, unknown>;
  shardingConfig: Record<string, unknown>;
  moduleConfig?: Record<string, unknown>;
  [k: string]: unknown;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function hnswDefaults(given: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    skip: false,
    cleanupIntervalSeconds: 300,
    maxConnections: 32,
    efConstruction: 128,
    ef: -1,
    dynamicEfMin: 100,
    dynamicEfMax: 500,
    dynamicEfFactor: 8,
    vectorCacheMaxObjects: 1000000000000,
    flatSearchCutoff: 40000,
    distance: 'cosine',
    filterStrategy: 'sweeping',
    pq: { enabled: false, bitCompression: false, segments: 0, centroids: 256, trainingLimit: 100000, encoder: { type: 'kmeans', distribution: 'log-normal' } },
    bq: { enabled: false },
    sq: { enabled: false, trainingLimit: 100000, rescoreLimit: 20 },
    rq: { enabled: false, bits: 8, rescoreLimit: 20 },
    multivector: { enabled: false, aggregation: 'maxSim', muvera: { enabled: false, ksim: 4, dprojections: 16, repetitions: 10 } },
    ...given,
  };
}

function propertyDefaults(p: PropertyDef): PropertyDef {
  const primitive = typeof p.dataType?.[0] === 'string' && p.dataType[0][0] === p.dataType[0][0]!.toLowerCase();
  const text = p.dataType?.[0] === 'text' || p.dataType?.[0] === 'text[]';
  const out: PropertyDef = { ...p };
  if (primitive) {
    out.indexFilterable ??= true;
    out.indexSearchable ??= text;
    out.indexRangeFilters ??= false;
    if (text) out.tokenization ??= 'word';
    if (p.nestedProperties) out.nestedProperties = p.nestedProperties.map(propertyDefaults);
  }
  return out;
}

/** A class as POSTed (possibly sparse) → the fully populated definition the server stores and returns. */
export function withDefaults(input: Record<string, unknown>): ClassDef {
  const name = String(input.class);
  const inverted = isObj(input.invertedIndexConfig) ? input.invertedIndexConfig : {};
  const cls: ClassDef = {
    ...input,
    class: name,
    properties: (Array.isArray(input.properties) ? (input.properties as PropertyDef[]) : []).map(propertyDefaults),
    invertedIndexConfig: {
      cleanupIntervalSeconds: 60,
      indexTimestamps: false,
      indexNullState: false,
      indexPropertyLength: false,
      usingBlockMaxWAND: true,
      ...inverted,
      bm25: { b: 0.75, k1: 1.2, ...(isObj(inverted.bm25) ? inverted.bm25 : {}) },
      stopwords: { preset: 'en', additions: null, removals: null, ...(isObj(inverted.stopwords) ? inverted.stopwords : {}) },
    },
    multiTenancyConfig: { enabled: false, autoTenantCreation: false, autoTenantActivation: false, ...(isObj(input.multiTenancyConfig) ? input.multiTenancyConfig : {}) },
    replicationConfig: { factor: 1, asyncEnabled: false, deletionStrategy: 'NoAutomatedResolution', ...(isObj(input.replicationConfig) ? input.replicationConfig : {}) },
    shardingConfig: {
      virtualPerPhysical: 128, desiredCount: 1, actualCount: 1, desiredVirtualCount: 128, actualVirtualCount: 128,
      key: '_id', strategy: 'hash', function: 'murmur3',
      ...(isObj(input.shardingConfig) ? input.shardingConfig : {}),
    },
  };
  if (isObj(input.vectorConfig) && Object.keys(input.vectorConfig).length > 0) {
    // Named vectors (what v3 `collections.create` sends with `vectorizers`).
    const vc: ClassDef['vectorConfig'] = {};
    for (const [k, v] of Object.entries(input.vectorConfig)) {
      const given = isObj(v) ? v : {};
      vc[k] = {
        vectorizer: isObj(given.vectorizer) && Object.keys(given.vectorizer).length > 0 ? given.vectorizer : { none: {} },
        vectorIndexType: typeof given.vectorIndexType === 'string' ? given.vectorIndexType : 'hnsw',
        vectorIndexConfig: hnswDefaults(isObj(given.vectorIndexConfig) ? given.vectorIndexConfig : {}),
      };
    }
    cls.vectorConfig = vc;
    delete cls.vectorizer;
    delete cls.vectorIndexConfig;
    delete cls.vectorIndexType;
  } else {
    delete cls.vectorConfig;
    cls.vectorizer = typeof input.vectorizer === 'string' ? input.vectorizer : 'none';
    cls.vectorIndexType = typeof input.vectorIndexType === 'string' ? input.vectorIndexType : 'hnsw';
    cls.vectorIndexConfig = hnswDefaults(isObj(input.vectorIndexConfig) ? input.vectorIndexConfig : {});
  }
  if (!isObj(cls.moduleConfig) || Object.keys(cls.moduleConfig).length === 0) delete cls.moduleConfig;
  return cls;
}

/** Auto-schema: the data type Weaviate infers for a value it has not seen in the class. */
export function inferDataType(v: unknown): string {
  const one = (x: unknown): string => {
    if (typeof x === 'boolean') return 'boolean';
    if (typeof x === 'number') return 'number';
    if (typeof x === 'string') return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(x) ? 'date' : 'text';
    if (isObj(x)) return 'object';
    return 'text';
  };
  if (Array.isArray(v)) return `${v.length > 0 ? one(v[0]) : 'text'}[]`;
  return one(v);
}

const DISTANCES = new Set(['cosine', 'dot', 'l2-squared', 'manhattan', 'hamming']);

/** The distance metric of the vector index searched as `target` ('' = the default/legacy one). */
export function distanceOf(cls: ClassDef, target: string): string {
  const cfg = cls.vectorConfig ? (cls.vectorConfig[target] ?? Object.values(cls.vectorConfig)[0])?.vectorIndexConfig : cls.vectorIndexConfig;
  const d = cfg?.distance;
  return typeof d === 'string' && DISTANCES.has(d) ? d : 'cosine';
}
