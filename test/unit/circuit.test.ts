import { expect } from 'chai';
import { CircuitBreaker } from '../../services/balancer/src/circuit.js';

function openAt(cb: CircuitBreaker, id: string, now: number): void {
  for (let i = 0; i < cb.failureThreshold; i++) cb.failure(id, now);
}

describe('circuit breaker', () => {
  it('stays closed below the threshold and a success resets the count', () => {
    const cb = new CircuitBreaker();
    for (let i = 0; i < 4; i++) cb.failure('n', 0);
    expect(cb.state('n', 0)).to.equal('closed');
    cb.success('n');
    for (let i = 0; i < 4; i++) cb.failure('n', 0);
    expect(cb.state('n', 0)).to.equal('closed');
    expect(cb.allow('n', 0)).to.equal(true);
    cb.failure('n', 0);
    expect(cb.state('n', 0)).to.equal('open');
    expect(cb.state('other', 0)).to.equal('closed');
  });

  it('refuses while open, then lets exactly one probe through after the cooldown', () => {
    const cb = new CircuitBreaker({ failureThreshold: 5, cooldownMs: 5000 });
    openAt(cb, 'n', 1000);
    expect(cb.allow('n', 1000)).to.equal(false);
    expect(cb.allow('n', 5999)).to.equal(false);
    expect(cb.state('n', 5999)).to.equal('open');
    expect(cb.state('n', 6000)).to.equal('half_open');
    expect(cb.available('n', 6000)).to.equal(true);
    expect(cb.available('n', 6000)).to.equal(true); // peeking does not claim the probe
    expect(cb.allow('n', 6000)).to.equal(true);
    expect(cb.allow('n', 6000)).to.equal(false);
    expect(cb.available('n', 6001)).to.equal(false);
    expect(cb.allow('n', 7000)).to.equal(false);
  });

  it('closes when the probe succeeds', () => {
    const cb = new CircuitBreaker();
    openAt(cb, 'n', 0);
    expect(cb.allow('n', 5000)).to.equal(true);
    cb.success('n');
    expect(cb.state('n', 5000)).to.equal('closed');
    expect(cb.allow('n', 5000)).to.equal(true);
    expect(cb.allow('n', 5000)).to.equal(true);
    // A fresh closed circuit needs the full threshold again.
    for (let i = 0; i < 4; i++) cb.failure('n', 5000);
    expect(cb.state('n', 5000)).to.equal('closed');
  });

  it('re-opens with a fresh cooldown when the probe fails', () => {
    const cb = new CircuitBreaker();
    openAt(cb, 'n', 0);
    expect(cb.allow('n', 5000)).to.equal(true);
    cb.failure('n', 6000);
    expect(cb.state('n', 6000)).to.equal('open');
    expect(cb.allow('n', 10_999)).to.equal(false);
    expect(cb.state('n', 11_000)).to.equal('half_open');
    expect(cb.allow('n', 11_000)).to.equal(true);
  });

  it('late results of requests sent before opening neither extend nor end the cooldown', () => {
    const cb = new CircuitBreaker();
    openAt(cb, 'n', 0);
    cb.failure('n', 4000);
    cb.success('n');
    expect(cb.state('n', 4999)).to.equal('open');
    expect(cb.state('n', 5000)).to.equal('half_open');
  });

  it('allows another probe when the first one never reports back', () => {
    const cb = new CircuitBreaker({ probeTimeoutMs: 10_000 });
    openAt(cb, 'n', 0);
    expect(cb.allow('n', 5000)).to.equal(true);
    expect(cb.allow('n', 14_999)).to.equal(false);
    expect(cb.allow('n', 15_000)).to.equal(true);
  });

  it('keeps nodes apart and forgets on request', () => {
    const cb = new CircuitBreaker({ failureThreshold: 1 });
    cb.failure('a', 0);
    expect(cb.allow('a', 0)).to.equal(false);
    expect(cb.allow('b', 0)).to.equal(true);
    cb.forget('a');
    expect(cb.state('a', 0)).to.equal('closed');
    expect(() => new CircuitBreaker({ failureThreshold: 0 })).to.throw(RangeError);
  });

  it('counts only the probe outcome while half-open: late outcomes of earlier requests neither re-open nor close it', () => {
    const cb = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 100 });
    cb.failure('n', 0, 0);
    expect(cb.state('n', 50)).to.equal('open');
    expect(cb.allow('n', 100)).to.equal(true); // the probe, sent at 100
    cb.failure('n', 110, 20); // a request sent at 20 fails late
    cb.success('n', 30); // and another sent at 30 succeeds late
    expect(cb.state('n', 120)).to.equal('half_open');
    expect(cb.allow('n', 120)).to.equal(false); // the probe is still out
    cb.success('n', 100); // the probe itself
    expect(cb.state('n', 130)).to.equal('closed');
  });

  it('frees the probe slot when its outcome will never come', () => {
    const cb = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 100 });
    cb.failure('n', 0, 0);
    expect(cb.allow('n', 100)).to.equal(true);
    expect(cb.allow('n', 101)).to.equal(false);
    cb.abandon('n');
    expect(cb.allow('n', 102)).to.equal(true);
  });
});
