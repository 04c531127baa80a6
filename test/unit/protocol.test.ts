import { expect } from 'chai';
import { encode, parse, ErrorCodes, ShoalError, PROTOCOL_VERSION, readReply, ok, fail, subjects, poolFromSubject } from '@shoal/protocol';

function codeOf(fn: () => unknown): string | undefined {
  try { fn(); } catch (err) { return (err as ShoalError).code; }
  return undefined;
}

describe('protocol', () => {
  it('parses a valid acquire and drops unknown fields', () => {
    const m = parse('acquire', encode({ v: PROTOCOL_VERSION, pool: 'synthetic', timeoutMs: 1000, priority: 2, junk: 1 }));
    expect(m).to.deep.equal({ pool: 'synthetic', timeoutMs: 1000, priority: 2 });
  });
  it('rejects malformed msgpack, non-maps, missing and mistyped fields with BAD_REQUEST naming the field', () => {
    expect(codeOf(() => parse('acquire', new Uint8Array([0xc1, 0xff, 0x00])))).to.equal(ErrorCodes.BAD_REQUEST);
    expect(codeOf(() => parse('acquire', encode([1, 2])))).to.equal(ErrorCodes.BAD_REQUEST);
    try { parse('acquire', encode({ v: 1, pool: 'p', timeoutMs: 'soon' })); expect.fail(); }
    catch (err) { expect((err as ShoalError).code).to.equal('BAD_REQUEST'); expect((err as Error).message).to.contain('timeoutMs'); }
    try { parse('release', encode({ v: 1 })); expect.fail(); }
    catch (err) { expect((err as Error).message).to.contain('leaseId'); }
    expect(codeOf(() => parse('acquire', encode({ v: 1, pool: 'a.b', timeoutMs: 5 })))).to.equal('BAD_REQUEST');
    expect(codeOf(() => parse('acquire', encode({ v: 1, pool: 'a', timeoutMs: 1.5 })))).to.equal('BAD_REQUEST');
  });
  it('answers another protocol version with VERSION_MISMATCH and a missing one with BAD_REQUEST', () => {
    expect(codeOf(() => parse('renew', encode({ v: 2, leaseId: 'x' })))).to.equal(ErrorCodes.VERSION_MISMATCH);
    expect(codeOf(() => parse('renew', encode({ leaseId: 'x' })))).to.equal(ErrorCodes.BAD_REQUEST);
  });
  it('round-trips replies; an error reply throws a ShoalError with its pool numbers', () => {
    expect(readReply(encode(ok({ a: 1 })))).to.deep.equal({ a: 1 });
    const err = new ShoalError('POOL_TIMEOUT', 'late', { pool: { total: 2, active: 2, idle: 0, waiting: 3 } });
    try { readReply(encode(fail(err))); expect.fail(); }
    catch (e) { expect((e as ShoalError).code).to.equal('POOL_TIMEOUT'); expect((e as ShoalError).pool?.waiting).to.equal(3); }
  });
  it('builds subjects and reads the pool back', () => {
    const s = subjects('shoal');
    expect(s.poolAcquire('claude')).to.equal('shoal.claude.acquire');
    expect(s.leaseRelease('N1')).to.equal('shoal.node.N1.lease.release');
    expect(poolFromSubject('shoal.claude.exec')).to.equal('claude');
    expect(poolFromSubject('other.claude.exec')).to.equal(undefined);
  });
});

describe('protocol interop and hostile input', () => {
  it('encodes unset optional fields as nil and reads 64-bit integers as numbers', () => {
    const bytes = encode({ v: 1, priority: undefined });
    expect(Array.from(bytes)).to.not.include(0xd4); // no msgpackr extension type for undefined
    // {"v": int64(1), "pool": "p", "timeoutMs": uint64(5)} as another language's library may write it.
    const foreign = new Uint8Array([0x83, 0xa1, 0x76, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1, 0xa4, 0x70, 0x6f, 0x6f, 0x6c, 0xa1, 0x70, 0xa9, ...Buffer.from('timeoutMs'), 0xcf, 0, 0, 0, 0, 0, 0, 0, 5]);
    expect(parse('acquire', foreign)).to.deep.equal({ pool: 'p', timeoutMs: 5 });
  });
  it('answers odd types with BAD_REQUEST, never an internal error', () => {
    expect(codeOf(() => parse('acquire', encode({ v: { toString: 1 }, pool: 'p', timeoutMs: 5 })))).to.equal('BAD_REQUEST');
    expect(codeOf(() => parse('acquire', encode({ v: 1, pool: { a: [1, { b: 2 }] }, timeoutMs: 5 })))).to.equal('BAD_REQUEST');
  });
});
