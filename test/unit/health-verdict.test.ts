import { expect } from 'chai';
import type { HealthCheckSpec } from '@shoal/config';
import type { HealthVerdict, ProbeReply } from '@shoal/protocol';
import {
  differs, initialState, judge, probeInterval, shouldWrite, step, toVerdict,
  type NodeHealthState, type Observation, type Thresholds,
} from '../../services/health-checker/src/verdict.js';
import { FakeClock } from '../helpers/fake-clock.js';

const MB = 1048576;
const SPECS: HealthCheckSpec[] = [
  { type: 'ping', endpoint: '/health' },
  { type: 'response_time', maxLatencyMs: 100 },
  { type: 'memory_usage', maxUsagePercent: 80 },
];
const TH: Thresholds = { failureThreshold: 3, recoveryThreshold: 2 };
const TIMEOUT = 500;

function reply(o: Partial<ProbeReply> = {}): ProbeReply {
  return { nodeId: 'n1', rssBytes: 50 * MB, memoryLimitBytes: 100 * MB, pools: { p: { ms: 1, valid: true, healthy: true } }, ...o };
}
const good = (o: Partial<ProbeReply> = {}, probeMs = 5): Observation => ({ ping: { ok: true, ms: 1 }, probe: { ok: true, ms: probeMs, reply: reply(o) } });
const hung: Observation = { ping: { ok: false, error: 'ping: no answer within 500 ms' }, probe: { ok: false, error: 'probe: no answer within 500 ms' } };

/** Fold rounds one interval apart on the fake clock; returns every state after each round. */
async function run(clock: FakeClock, rounds: Observation[], intervalMs = 1000, specs = SPECS, s0?: NodeHealthState): Promise<NodeHealthState[]> {
  let s = s0 ?? initialState(clock.now());
  const out: NodeHealthState[] = [];
  for (const obs of rounds) {
    await clock.advance(intervalMs);
    s = step(s, judge(specs, obs, TIMEOUT), TH, clock.now());
    out.push(s);
  }
  return out;
}

describe('health verdicts (pure, fake clock)', () => {
  it('a node starts healthy and stays so while every check passes', async () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const states = await run(clock, [good(), good(), good()]);
    expect(states.map((s) => s.healthy)).to.deep.equal([true, true, true]);
    expect(states.at(-1)!.since).to.equal(t0);
    const v = toVerdict(states.at(-1)!, 'n1', 'c1', clock.now());
    expect(v).to.include({ nodeId: 'n1', healthy: true, checkerId: 'c1', since: t0, at: clock.now() });
    expect(v.reason).to.equal(undefined);
    expect(v.checks.map((c) => c.type).sort()).to.deep.equal(['memory_usage', 'ping', 'response_time']);
    expect(v.pools).to.deep.equal({ p: { healthy: true } });
  });

  it('ping: unhealthy only after failure_threshold consecutive failures, with the reason', async () => {
    const clock = new FakeClock();
    const states = await run(clock, [hung, hung, good(), hung, hung, hung]);
    // Two failures then a success resets the streak; three in a row flip it.
    expect(states.map((s) => s.healthy)).to.deep.equal([true, true, true, true, true, false]);
    const v = toVerdict(states.at(-1)!, 'n1', 'c1', clock.now());
    expect(v.healthy).to.equal(false);
    expect(v.since).to.equal(clock.now());
    expect(v.reason).to.match(/ping: ping: no answer within 500 ms/);
    expect(v.checks.find((c) => c.type === 'ping')).to.deep.include({ ok: false, limit: TIMEOUT });
  });

  it('recovery: healthy again only after recovery_threshold consecutive good rounds; since marks each change', async () => {
    const clock = new FakeClock();
    const down = await run(clock, [hung, hung, hung]);
    const downAt = clock.now();
    expect(down.at(-1)!.healthy).to.equal(false);
    const back = await run(clock, [good(), hung, good(), good()], 1000, SPECS, down.at(-1));
    expect(back.map((s) => s.healthy)).to.deep.equal([false, false, false, true]);
    expect(back[2]!.since).to.equal(downAt);
    expect(back[3]!.since).to.equal(clock.now());
  });

  it('response_time: a probe round trip over max_latency fails, with the numbers', async () => {
    const clock = new FakeClock();
    const slow = good({}, 250);
    const states = await run(clock, [slow, slow, slow]);
    expect(states.at(-1)!.healthy).to.equal(false);
    const c = toVerdict(states.at(-1)!, 'n1', 'c1', clock.now()).checks.find((x) => x.type === 'response_time')!;
    expect(c).to.deep.include({ ok: false, value: 250, limit: 100 });
    expect(c.message).to.match(/250 ms > 100 ms/);
    // Just at the limit passes.
    const ok = judge(SPECS, good({}, 100), TIMEOUT).checks.find((x) => x.type === 'response_time')!;
    expect(ok.ok).to.equal(true);
  });

  it('memory_usage: rss over max_usage of the node limit fails, as a percentage', async () => {
    const clock = new FakeClock();
    const fat = good({ rssBytes: 90 * MB, memoryLimitBytes: 100 * MB });
    const states = await run(clock, [fat, fat, fat]);
    const v = toVerdict(states.at(-1)!, 'n1', 'c1', clock.now());
    expect(v.healthy).to.equal(false);
    expect(v.checks.find((x) => x.type === 'memory_usage')).to.deep.include({ ok: false, value: 90, limit: 80 });
    expect(v.reason).to.match(/memory_usage: rss 90 MB is 90% of the node's 100 MB limit > 80%/);
    expect(judge(SPECS, good({ rssBytes: 80 * MB }), TIMEOUT).checks.find((x) => x.type === 'memory_usage')!.ok).to.equal(true);
    // Resources' memory (CLI processes) counts too.
    const withKids = judge(SPECS, good({ rssBytes: 40 * MB, resourcesBytes: 50 * MB }), TIMEOUT).checks.find((x) => x.type === 'memory_usage')!;
    expect(withKids).to.deep.include({ ok: false, value: 90 });
    expect(withKids.message).to.match(/rss 40 MB \+ resources 50 MB is 90%/);
  });

  it('thresholds count per check: failures of different checks do not add up', async () => {
    const clock = new FakeClock();
    const slow = good({}, 250);
    const fat = good({ rssBytes: 99 * MB });
    const states = await run(clock, [slow, fat, slow, fat]);
    expect(states.every((s) => s.healthy)).to.equal(true);
  });

  it('a check not known this round (no probe reply) keeps its counters', async () => {
    const clock = new FakeClock();
    const fat = good({ rssBytes: 99 * MB });
    const probeLost: Observation = { ping: { ok: true, ms: 1 }, probe: { ok: false, error: 'probe: timeout' } };
    // memory: fail, (unknown), fail, fail -> failing after three failures; response_time: one failure only.
    const states = await run(clock, [fat, probeLost, fat, fat]);
    expect(states.at(-1)!.healthy).to.equal(false);
    expect(states.at(-1)!.checks.memory_usage!.failing).to.equal(true);
    expect(states.at(-1)!.checks.response_time!.failing).to.equal(false);
  });

  it("a pool's backend failing marks the pool, not the node; it recovers by the same thresholds", async () => {
    const clock = new FakeClock();
    const down = good({ pools: { p: { healthy: false, reason: 'Weaviate at localhost:8080 unreachable' }, q: { ms: 1, valid: true, healthy: true } } });
    const states = await run(clock, [down, down, down]);
    let v = toVerdict(states.at(-1)!, 'n1', 'c1', clock.now());
    expect(v.healthy).to.equal(true);
    expect(v.pools).to.deep.equal({ p: { healthy: false, reason: 'Weaviate at localhost:8080 unreachable' }, q: { healthy: true } });
    const back = await run(clock, [good(), good()], 1000, SPECS, states.at(-1));
    v = toVerdict(back.at(-1)!, 'n1', 'c1', clock.now());
    expect(v.pools.p).to.deep.equal({ healthy: true });
    // An idle resource that fails validation counts against its pool too.
    const invalid = judge(SPECS, good({ pools: { p: { ms: 3, valid: false, healthy: true } } }), TIMEOUT);
    expect(invalid.pools.p).to.deep.include({ ok: false, message: 'an idle resource failed validation' });
  });

  it('only the configured checks are judged', () => {
    const r = judge([{ type: 'ping', endpoint: 'ping' }], good({ rssBytes: 99 * MB }, 999), TIMEOUT);
    expect(r.checks.map((c) => c.type)).to.deep.equal(['ping']);
  });

  it('differs: the first verdict and every change (node or pool) are written', async () => {
    const clock = new FakeClock();
    const s = initialState(clock.now());
    expect(differs(s, undefined)).to.equal(true);
    const v = toVerdict(s, 'n1', 'c1', clock.now());
    expect(differs(s, v)).to.equal(false);
    const [poolDown] = await run(clock, [good({ pools: { p: { healthy: false } } })], 1000, SPECS, { ...s, pools: { p: { failing: false, streak: 2, last: { type: 'backend', ok: false } } } });
    expect(differs(poolDown!, v)).to.equal(true);
  });

  it('replicas: an unhealthy verdict is always written; a healthy one waits until another checker\'s unhealthy one is stale', () => {
    const clock = new FakeClock();
    const now = clock.now();
    const v = (o: Partial<HealthVerdict>): HealthVerdict => ({ v: 1, nodeId: 'n1', healthy: true, at: now, since: now, checkerId: 'a', checks: [], pools: {}, ...o });
    const mineOk = v({ checkerId: 'b' });
    const mineBad = v({ checkerId: 'b', healthy: false });
    expect(shouldWrite(mineBad, v({ checkerId: 'a' }), now, 3000)).to.equal(true);
    expect(shouldWrite(mineOk, undefined, now, 3000)).to.equal(true);
    expect(shouldWrite(mineOk, v({ checkerId: 'a', healthy: true }), now, 3000)).to.equal(true);
    expect(shouldWrite(mineOk, v({ checkerId: 'b', healthy: false }), now, 3000)).to.equal(true);
    expect(shouldWrite(mineOk, v({ checkerId: 'a', healthy: false, at: now - 2999 }), now, 3000)).to.equal(false);
    expect(shouldWrite(mineOk, v({ checkerId: 'a', healthy: false, at: now - 3000 }), now, 3000)).to.equal(true);
  });

  it('probe interval: health_check.interval, else the shortest pool load_balancing.health_check_interval, else 30 s', () => {
    expect(probeInterval(2000, [500, 100])).to.equal(2000);
    expect(probeInterval(undefined, [500, undefined, 300])).to.equal(300);
    expect(probeInterval(undefined, [undefined])).to.equal(30_000);
    expect(probeInterval(undefined, [])).to.equal(30_000);
  });
});
