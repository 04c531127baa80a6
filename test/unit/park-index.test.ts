import { expect } from 'chai';
import { parkKeyHash, type Heartbeat } from '@shoal/protocol';
import { ParkIndex, pinnedCandidate } from '../../services/balancer/src/park-index.js';

const hb = (nodeId: string, pools: Record<string, string[]>): Heartbeat => ({
  v: 1, nodeId, seq: 1, startedAt: 1000, intervalMs: 1000, draining: false, host: 'h', pid: 1, inFlight: 0, maxConcurrent: 0, cpu: 0, memory: { rss: 0, heapUsed: 0 },
  // Heartbeats carry the keys' hashes, never the keys.
  pools: Object.fromEntries(Object.entries(pools).map(([p, parked]) => [p, { parkedHashes: parked.map(parkKeyHash) }])),
} as unknown as Heartbeat);

describe('balancer park index (parked key hashes from heartbeats)', () => {
  it('maps a key to the node whose last heartbeat lists it, and drops keys the next heartbeat no longer lists', () => {
    const ix = new ParkIndex();
    ix.observe(hb('a', { chat: ['k1', 'k2'] }));
    ix.observe(hb('b', { chat: ['k3'], solo: ['k1'] }));
    expect(ix.on('chat', 'k1')).to.equal('a');
    expect(ix.on('solo', 'k1')).to.equal('b');
    expect(ix.on('chat', 42)).to.equal(undefined);
    ix.observe(hb('a', { chat: ['k2'] }));
    expect(ix.on('chat', 'k1')).to.equal(undefined);
    expect(ix.on('chat', 'k2')).to.equal('a');
    // A key that moved to another node is not dropped by the old node's next heartbeat.
    ix.observe(hb('b', { chat: ['k3', 'k2'], solo: ['k1'] }));
    ix.observe(hb('a', {}));
    expect(ix.on('chat', 'k2')).to.equal('b');
  });

  it('a node forgotten (gone, replaced) takes its keys with it: nothing piles up', () => {
    const ix = new ParkIndex();
    for (let i = 0; i < 50; i++) ix.observe(hb(`n${i}`, { chat: [`k${i}`, `x${i}`] }));
    expect(ix.size).to.equal(100);
    for (let i = 0; i < 50; i++) ix.forget(`n${i}`);
    expect(ix.size).to.equal(0);
    expect(ix.on('chat', 'k0')).to.equal(undefined);
  });

  it('pins the parked node only while its weight is above 0 (weight 0 is out of rotation)', () => {
    const cands = [{ nodeId: 'a', weight: 1 }, { nodeId: 'b', weight: 0 }];
    expect(pinnedCandidate(cands, 'a')?.nodeId).to.equal('a');
    expect(pinnedCandidate(cands, 'b')).to.equal(undefined);
    expect(pinnedCandidate(cands, 'c')).to.equal(undefined);
    expect(pinnedCandidate(cands, undefined)).to.equal(undefined);
  });
});
