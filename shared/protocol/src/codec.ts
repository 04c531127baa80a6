import { Packr } from 'msgpackr';
import { ErrorCodes, ShoalError } from './errors.js';

// Plain msgpack maps (no msgpackr records extension) so that any language's
// msgpack library can read and write Shoal messages.
// `undefined` (an optional field left unset) goes as nil, not msgpackr's extension type;
// 64-bit integers from other languages decode as numbers, not BigInt.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, encodeUndefinedAsNil: true, int64AsType: 'number' });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decode bytes; anything that is not a msgpack map is a BAD_REQUEST. */
export function decode(data: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = packr.unpack(data);
  } catch (err) {
    throw new ShoalError(ErrorCodes.BAD_REQUEST, `malformed message: not msgpack (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ShoalError(ErrorCodes.BAD_REQUEST, 'malformed message: expected a msgpack map');
  }
  return value as Record<string, unknown>;
}
