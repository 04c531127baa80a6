import { expect } from 'chai';
import { latencySummaryUs, median, percentile, ratio, round, sortedCopy } from '../../bench/lib/stats.js';

describe('bench stats helpers', () => {
  it('percentile uses the nearest rank', () => {
    const s = sortedCopy([5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
    expect(Array.from(s)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(percentile(s, 50)).to.equal(5);
    expect(percentile(s, 90)).to.equal(9);
    expect(percentile(s, 99)).to.equal(10);
    expect(percentile(s, 0)).to.equal(1);
    expect(percentile(s, 100)).to.equal(10);
    expect(percentile([42], 99)).to.equal(42);
    expect(Number.isNaN(percentile([], 50))).to.equal(true);
  });

  it('sorts numerically, not as strings', () => {
    expect(Array.from(sortedCopy([10, 9, 100, 1]))).to.deep.equal([1, 9, 10, 100]);
  });

  it('median of odd and even counts; NaN when empty', () => {
    expect(median([3, 1, 2])).to.equal(2);
    expect(median([4, 1, 3, 2])).to.equal(2.5);
    expect(Number.isNaN(median([]))).to.equal(true);
  });

  it('ratio and round guard against zero and non-finite values', () => {
    expect(ratio(9, 10)).to.equal(0.9);
    expect(Number.isNaN(ratio(1, 0))).to.equal(true);
    expect(Number.isNaN(ratio(NaN, 1))).to.equal(true);
    expect(round(1.23456, 2)).to.equal(1.23);
    expect(round(1234.5)).to.equal(1235);
    expect(Number.isNaN(round(NaN, 2))).to.equal(true);
  });

  it('summarises millisecond samples in microseconds', () => {
    const samples = Array.from({ length: 100 }, (_, i) => (i + 1) / 1000); // 1..100 µs
    const s = latencySummaryUs(samples);
    expect(s.n).to.equal(100);
    expect(s.p50_us).to.be.closeTo(50, 1e-9);
    expect(s.p99_us).to.be.closeTo(99, 1e-9);
  });
});
