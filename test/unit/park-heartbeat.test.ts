import { expect } from 'chai';
import { encode, parkKeyHash, PARK_KEY_HASH_BYTES } from '@shoal/protocol';
import { parkedBudget, shareParked, PARKED_HEARTBEAT_BYTES } from '../../services/pool-node/src/park-heartbeat.js';

describe('parked keys in heartbeats (hashes, byte budget)', () => {
  it('a key hash has a fixed size whatever the key, and takes PARK_KEY_HASH_BYTES in msgpack', () => {
    const short = parkKeyHash('a');
    const long = parkKeyHash('k'.repeat(128));
    expect(short).to.have.length(12).and.not.equal(long);
    expect(long).to.have.length(12);
    expect(parkKeyHash('a')).to.equal(short);
    // An array of n hashes: n × PARK_KEY_HASH_BYTES at most (plus the array's header).
    const arr = Array.from({ length: 1000 }, (_, i) => parkKeyHash(`key-${i}`));
    expect(encode({ a: arr }).length).to.be.at.most(1000 * PARK_KEY_HASH_BYTES + 8);
  });

  it('the budget is what max_payload leaves, capped; never negative', () => {
    expect(parkedBudget(1000, 8192)).to.equal(8192 - 1000 - 256);
    expect(parkedBudget(1000, undefined)).to.equal(PARKED_HEARTBEAT_BYTES);
    expect(parkedBudget(9000, 8192)).to.equal(0);
  });

  it('shares the budget between pools: a small pool takes what it needs, the rest goes to the others; all fit when they can', () => {
    const share = shareParked([{ pool: 'big', count: 1000 }, { pool: 'small', count: 3 }, { pool: 'none', count: 0 }], 4000);
    expect(share.get('small')).to.equal(3);
    const big = share.get('big')!;
    expect(big).to.be.greaterThan(200).and.lessThan(1000);
    expect(big * PARK_KEY_HASH_BYTES + 3 * PARK_KEY_HASH_BYTES + 80).to.be.at.most(4000);
    expect(share.has('none')).to.equal(false);
    const all = shareParked([{ pool: 'a', count: 10 }, { pool: 'b', count: 10 }], 100_000);
    expect([all.get('a'), all.get('b')]).to.deep.equal([10, 10]);
    expect(shareParked([{ pool: 'a', count: 10 }], 0).get('a')).to.equal(0);
  });
});
