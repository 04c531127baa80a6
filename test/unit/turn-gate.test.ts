import { expect } from 'chai';
import { isStale, localGates, pickFair, retryDelay } from '../../services/pool-node/src/turn-gate.js';

describe('turn gate decisions (account-wide cap on Claude turns)', () => {
  it('serves clients round robin in the order their queues opened', () => {
    const q = new Map<string, string[]>([['a', ['a1', 'a2', 'a3']], ['b', ['b1']], ['c', ['c1', 'c2']]]);
    const got: string[] = [];
    for (let x = pickFair(q); x !== undefined; x = pickFair(q)) got.push(x);
    expect(got).to.deep.equal(['a1', 'b1', 'c1', 'a2', 'c2', 'a3']);
    expect(q.size).to.equal(0);
    expect(pickFair(new Map())).to.equal(undefined);
  });

  it('backs off from 25 ms doubling to 1 s, jittered ±50 %', () => {
    expect(retryDelay(1, () => 0.5)).to.equal(25);
    expect(retryDelay(2, () => 0.5)).to.equal(50);
    expect(retryDelay(20, () => 0.5)).to.equal(1000);
    expect(retryDelay(20, () => 0)).to.equal(500);
    expect(retryDelay(20, () => 0.999)).to.be.lessThan(1500);
  });

  it('a slot not refreshed for the TTL is free (its holder died)', () => {
    expect(isStale(undefined, 1000)).to.equal(true);
    expect(isStale({ holder: 'n/1', at: 1000 }, 1000 + 15_000)).to.equal(false);
    expect(isStale({ holder: 'n/1', at: 1000 }, 1000 + 15_001)).to.equal(true);
  });

  it('local gate: at most cap at once, waiters served fairly per client, an aborted waiter leaves the queue', async () => {
    const gate = localGates().gate('acct', 1);
    const order: string[] = [];
    const first = await gate.acquire('busy');
    // One client queues many, two others one each: they must not wait behind all of busy's.
    const waits = [
      ...[1, 2, 3].map((i) => gate.acquire('busy').then((rel) => { order.push(`busy${i}`); setImmediate(rel); })),
      gate.acquire('x').then((rel) => { order.push('x'); setImmediate(rel); }),
      gate.acquire('y').then((rel) => { order.push('y'); setImmediate(rel); }),
    ];
    const ac = new AbortController();
    const gone = gate.acquire('z', ac.signal).then(() => 'granted', () => 'aborted');
    ac.abort(new Error('gave up'));
    expect(await gone).to.equal('aborted');
    first();
    await Promise.all(waits);
    expect(order).to.deep.equal(['busy1', 'x', 'y', 'busy2', 'busy3']);
  });
});
