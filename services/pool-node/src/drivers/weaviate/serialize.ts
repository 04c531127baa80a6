/**
 * weaviate-client results → values that travel through msgpack intact:
 * ids, properties, metadata and vectors keep their values and types.
 *
 * - `undefined` fields are dropped (the client fills many: `references`,
 *   metadata it was not asked for); `undefined` in an array becomes null.
 * - Dates stay Dates (msgpack timestamp extension; the SDK decodes them as
 *   Dates again), as `creationTime`, `updateTime` and date properties are.
 * - vectors are plain number arrays (float32 values are exact in float64);
 *   typed arrays other than bytes become number arrays; bytes stay bytes.
 * - Maps become objects, bigints numbers (or strings beyond 2^53).
 */
export function toWire(v: unknown, depth = 0): unknown {
  if (depth > 64) throw new Error('result nested deeper than 64 levels');
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case 'string':
    case 'number':
    case 'boolean':
      return v;
    case 'bigint':
      return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    case 'function':
    case 'symbol':
      return null;
    default:
      break;
  }
  if (v instanceof Date) return v;
  if (Array.isArray(v)) return v.map((x) => toWire(x, depth + 1));
  if (v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
  if (v instanceof Map) return toWire(Object.fromEntries(v), depth);
  if (v instanceof Set) return [...v].map((x) => toWire(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue;
    out[k] = toWire(x, depth + 1);
  }
  return out;
}
