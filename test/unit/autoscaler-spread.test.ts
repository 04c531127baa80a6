import { expect } from 'chai';
import { loadConfig, readPolicies } from '@shoal/config';
import { desiredNodes, stabilizeDesired } from '../../services/autoscaler/src/desired.js';
import { forecastDemand, linearTrend, sustainedTrend } from '../../services/autoscaler/src/forecast.js';
import { spread, type NodeSlot } from '../../services/autoscaler/src/spread.js';
import { scalingConfigOf } from '../../services/autoscaler/src/decide.js';
import { FakeClock } from '../helpers/fake-clock.js';

const slot = (nodeId: string, o: Partial<NodeSlot> = {}): NodeSlot => ({ nodeId, min: 1, max: 10, weight: 1, demand: 0, current: 1, ...o });
const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

describe('autoscaler spread (pure)', () => {
  it('spreads a target evenly over equal nodes and sums to it', () => {
    const s = spread(9, [slot('a'), slot('b'), slot('c')]);
    expect(s.targets).to.deep.equal({ a: 3, b: 3, c: 3 });
    expect(s).to.include({ applied: 9, min: 3, max: 30, clamped: false });
  });

  it('respects each node\'s max_size and min_size, and clamps to what the nodes hold', () => {
    const nodes = [slot('a', { max: 2 }), slot('b', { max: 10 }), slot('c', { min: 3, current: 3 })];
    const s = spread(12, nodes);
    expect(s.targets.a).to.be.at.most(2);
    expect(s.targets.c).to.be.at.least(3);
    expect(sum(s.targets)).to.equal(12);
    expect(spread(100, nodes)).to.include({ applied: 22, clamped: true });
    expect(spread(100, nodes).targets).to.deep.equal({ a: 2, b: 10, c: 10 });
    expect(spread(0, nodes)).to.include({ applied: 5, clamped: true });
    expect(spread(0, nodes).targets).to.deep.equal({ a: 1, b: 1, c: 3 });
  });

  it('follows weight: a weight-2 node gets twice the share; weight 0 gets only its min', () => {
    const s = spread(12, [slot('a', { weight: 2, max: 20 }), slot('b', { weight: 1, max: 20 }), slot('z', { weight: 0 })]);
    expect(s.targets).to.deep.equal({ a: 7, b: 4, z: 1 });
    expect(spread(100, [slot('a'), slot('z', { weight: 0 })])).to.include({ max: 11, applied: 11 });
  });

  it('places new resources where demand is', () => {
    const s = spread(8, [slot('a', { demand: 0 }), slot('b', { demand: 5 })]);
    expect(s.targets.b).to.be.at.least(5);
    expect(sum(s.targets)).to.equal(8);
  });

  it('keeps the current targets when the sum already matches (no churn), takes back from the idlest', () => {
    expect(spread(10, [slot('a', { current: 7 }), slot('b', { current: 3 })]).targets).to.deep.equal({ a: 7, b: 3 });
    const down = spread(6, [slot('a', { current: 7, demand: 6 }), slot('b', { current: 3, demand: 0 })]);
    expect(down.targets).to.deep.equal({ a: 5, b: 1 });
  });

  it('a node joining or leaving: the same target is spread over who is there', () => {
    const three = spread(12, [slot('a', { current: 6 }), slot('b', { current: 6 }), slot('c', { current: 1 })]);
    expect(sum(three.targets)).to.equal(12);
    const two = spread(12, [slot('a', { current: 4 }), slot('c', { current: 4 })]);
    expect(two.targets).to.deep.equal({ a: 6, c: 6 });
  });

  it('no node: nothing to spread', () => {
    expect(spread(5, [])).to.deep.equal({ targets: {}, applied: 0, min: 0, max: 0, clamped: true });
  });
});

describe('autoscaler desired pool-nodes (pure)', () => {
  it('enough nodes at max_size for the target asked for or the demand at the threshold, at least one', () => {
    expect(desiredNodes({ liveNodes: 2, nodeMax: 5, demand: 4, requested: 6, scaleUpThreshold: 0.8 })).to.deep.equal({ desired: 2, need: 6 });
    // Every node full and acquires waiting: 12 wanted → 15 at 80 % → 3 nodes of 5.
    expect(desiredNodes({ liveNodes: 2, nodeMax: 5, demand: 12, requested: 10, scaleUpThreshold: 0.8 })).to.deep.equal({ desired: 3, need: 15 });
    expect(desiredNodes({ liveNodes: 2, nodeMax: 5, demand: 0, requested: 30, scaleUpThreshold: 0.8 }).desired).to.equal(6);
    expect(desiredNodes({ liveNodes: 3, nodeMax: 5, demand: 0, requested: 0, scaleUpThreshold: 0.8 }).desired).to.equal(1);
    expect(desiredNodes({ liveNodes: 0, nodeMax: 0, demand: 3, requested: 0, scaleUpThreshold: 0.8 }).desired).to.equal(4);
  });

  it('decreases are stabilized: the largest value of the window; a leader that just started keeps the nodes it finds', async () => {
    const clock = new FakeClock();
    const hist: { at: number; desired: number }[] = [];
    const seq = [3, 3, 1, 1, 1, 1, 1, 1, 1];
    const out: number[] = [];
    for (const d of seq) {
      out.push(stabilizeDesired(hist, clock.now(), 3000, d, 3));
      hist.push({ at: clock.now(), desired: d });
      await clock.advance(1000);
    }
    // Not covered for 3 s: no fewer than the 3 live nodes; then the max of the last 3 s; then 1.
    expect(out).to.deep.equal([3, 3, 3, 3, 3, 1, 1, 1, 1]);
    expect(stabilizeDesired([{ at: 0, desired: 1 }], 10_000, 3000, 4, 2)).to.equal(4);
  });
});

describe('autoscaler forecast (pure)', () => {
  it('fits a line and extrapolates a rising demand', () => {
    const pts = [0, 1000, 2000, 3000, 4000].map((at) => ({ at, v: 2 + at / 1000 }));
    const t = linearTrend(pts)!;
    expect(t.slope).to.be.closeTo(0.001, 1e-9);
    expect(t.last).to.be.closeTo(6, 1e-9);
    expect(forecastDemand(pts, 4000, 3000, 10_000)).to.be.closeTo(9, 1e-9);
  });

  it('a step reads as flat until most of the window has seen the new level (no overshoot), a ramp reads exactly', () => {
    const step = [0, 1000, 2000, 3000, 4000, 5000].map((at) => ({ at, v: at >= 5000 ? 16 : 2 }));
    expect(forecastDemand(step, 5000, 2500, 10_000)).to.equal(undefined);
    const ramp = [0, 1000, 2000, 3000, 4000, 5000].map((at) => ({ at, v: 1 + (2 * at) / 1000 }));
    expect(forecastDemand(ramp, 5000, 2500, 10_000)).to.be.closeTo(16, 1e-9);
  });

  it('a trend counts only when it held in both halves of the window: a backlog landing at once is not a ramp', () => {
    // Leased resources every 500 ms around a step, as the bench's pool-nodes report them: flat, the
    // queue's creates landing together, the queue draining to the new level.
    const series = [2, 2, 2, 2, 2, 2, 2, 10, 26, 37, 38, 28, 24, 18, 16, 17, 16, 16, 17, 16, 16, 16];
    const pts = series.map((v, i) => ({ at: i * 500, v }));
    for (let i = 2; i < pts.length; i++) {
      const f = forecastDemand(pts.slice(0, i + 1), i * 500, 2500, 5000);
      // Never the backlog extrapolated; at most a small rise of the new level.
      if (f !== undefined) expect(f, `at ${i * 500} ms`).to.be.at.most(20);
    }
    // A ramp rises in both halves and keeps its slope.
    const ramp = [0, 500, 1000, 1500, 2000, 2500, 3000].map((at) => ({ at, v: 4 + at / 500 }));
    expect(sustainedTrend(ramp)!.slope).to.be.closeTo(1 / 500, 1e-12);
    expect(forecastDemand(ramp, 3000, 2500, 5000)).to.be.closeTo(15, 1e-9);
    // A rise that stopped halfway is no trend to extrapolate.
    expect(sustainedTrend([0, 500, 1000, 1500, 2000, 2500, 3000].map((at) => ({ at, v: Math.min(10, 4 + at / 250) })))).to.equal(undefined);
  });

  it('no forecast from too few points, a flat or a falling series, or points out of the window', () => {
    expect(forecastDemand([{ at: 0, v: 1 }, { at: 1000, v: 2 }], 1000, 1000, 10_000)).to.equal(undefined);
    expect(forecastDemand([0, 1000, 2000].map((at) => ({ at, v: 5 })), 2000, 1000, 10_000)).to.equal(undefined);
    expect(forecastDemand([0, 1000, 2000].map((at) => ({ at, v: 5 - at / 1000 })), 2000, 1000, 10_000)).to.equal(undefined);
    expect(forecastDemand([0, 1000, 2000].map((at) => ({ at, v: at })), 30_000, 1000, 10_000)).to.equal(undefined);
  });
});

describe('autoscaler config keys', () => {
  it('reads scaling_policies in the design\'s shape plus duration', () => {
    const c = loadConfig({ env: {}, overrides: { 'pools.synthetic.scaling_policies': [
      { name: 'cpu_scaling', metric: 'cpu_usage', scale_up: { threshold: 0.8, increment: 5 }, scale_down: { threshold: 0.3, decrement: 2 }, duration: '30s' },
      { name: 'queue', metric: 'queue_length', scale_up: { threshold: 10, increment: 2 } },
    ] } });
    expect(c.pools.synthetic!.scalingPolicies).to.deep.equal([
      { name: 'cpu_scaling', metric: 'cpu_usage', durationMs: 30_000, up: { threshold: 0.8, increment: 5 }, down: { threshold: 0.3, decrement: 2 } },
      { name: 'queue', metric: 'queue_length', durationMs: 0, up: { threshold: 10, increment: 2 } },
    ]);
    expect(c.pools.synthetic!.autoScaling).to.include({ stabilizationWindowMs: 60_000, predictive: false });
    expect(c.autoscaler).to.deep.equal({ leaseTtlMs: 2000, intervalMs: 1000 });
  });

  it('hands each auto_scaling key of a pool (its own block or the inherited session_pool one) to the decisions; an undescribed pool is off', () => {
    const own = loadConfig({ env: {}, overrides: { 'pools.synthetic.auto_scaling': { enabled: true, scale_up_threshold: 0.7, scale_down_threshold: 0.2, scale_up_increment: 3, scale_down_increment: 1, cooldown_period: '5s', stabilization_window: '7s', predictive: true, scale_down_to_fit: true } } });
    expect(scalingConfigOf(own.pools.synthetic, 500)).to.deep.equal({
      enabled: true, scaleUpThreshold: 0.7, scaleDownThreshold: 0.2, scaleUpIncrement: 3, scaleDownIncrement: 1, cooldownMs: 5000, stabilizationWindowMs: 7000, predictive: true, scaleDownToFit: true, policies: [], tickMs: 500,
    });
    const inherited = loadConfig({ env: {}, overrides: { 'session_pool.auto_scaling.scale_down_to_fit': true } });
    expect(scalingConfigOf(inherited.pools.synthetic, 1000).scaleDownToFit).to.equal(true);
    expect(scalingConfigOf(loadConfig({ env: {} }).pools.synthetic, 1000).scaleDownToFit).to.equal(false);
    expect(scalingConfigOf(undefined, 1000)).to.include({ enabled: false, scaleDownToFit: false });
  });

  it('rejects a bad policy with the key named', () => {
    const bad = (p: unknown) => () => readPolicies([p]);
    expect(bad({ name: 'x', metric: 'disk', scale_up: { threshold: 1, increment: 1 } })).to.throw(/metric must be one of/);
    expect(bad({ name: 'x', metric: 'cpu_usage' })).to.throw(/needs scale_up or scale_down/);
    expect(bad({ name: 'x', metric: 'cpu_usage', scale_up: { threshold: 0.2, increment: 1 }, scale_down: { threshold: 0.5, decrement: 1 } })).to.throw(/must be below/);
    expect(bad({ name: 'x', metric: 'cpu_usage', scale_up: { threshold: 0.8, increment: 0 } })).to.throw(/increment must be an integer/);
    expect(bad({ name: 'x', metric: 'cpu_usage', scale_up: { threshold: 0.8, increment: 1 }, duration: 'soon' })).to.throw(/duration/);
    expect(() => loadConfig({ env: {}, overrides: { 'pools.synthetic.scaling_policies': [{ name: 'x', metric: 'ram' }] } })).to.throw(/pools\.synthetic\.scaling_policies/);
  });

  it('AICLI_SESSION_POOL_AUTO_SCALING=false and SHOAL_AUTOSCALER_* reach the config', () => {
    const c = loadConfig({ env: { AICLI_SESSION_POOL_AUTO_SCALING: 'false', SHOAL_AUTOSCALER_LEASE_TTL: '1s', SHOAL_AUTOSCALER_INTERVAL: '250ms' } });
    expect(c.pools.synthetic!.autoScaling.enabled).to.equal(false);
    expect(c.autoscaler).to.deep.equal({ leaseTtlMs: 1000, intervalMs: 250 });
  });
});
