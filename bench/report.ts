/**
 * Turn the JSON lines of `npm run bench` into the Markdown tables of
 * docs/benchmarks.md:
 *
 *   npm run bench 2>/dev/null | tee /tmp/bench.jsonl
 *   node --import tsx bench/report.ts /tmp/bench.jsonl
 */
import { readFileSync } from 'node:fs';

type Rec = Record<string, any>;
const file = process.argv[2];
if (!file) { process.stderr.write('usage: report <bench.jsonl>\n'); process.exit(2); }
const recs: Rec[] = readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Rec);

const yes = (m: unknown) => (m === true ? 'yes' : m === false ? '**no**' : '');
const n = (x: unknown, d = 0) => (typeof x === 'number' ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : String(x ?? ''));
const cpu = (o: Record<string, number> | undefined) => (o ? Object.entries(o).map(([k, v]) => `${k} ${n(v)}`).join(', ') : '');
const out: string[] = [];

const direct = recs.filter((r) => r.scenario === 'direct-cycle');
if (direct.length) {
  out.push('| direct-cycle c | ops/s | p50 µs | p99 µs | baseline ops/s | baseline p50 µs | ratio (goal ≥ 0.9) | met | pair ratios |', '|---:|---:|---:|---:|---:|---:|---:|:-:|:--|');
  for (const r of direct) out.push(`| ${r.concurrency} | ${n(r.ops_per_s)} | ${n(r.p50_us)} | ${n(r.p99_us)} | ${n(r.baseline_ops_per_s)} | ${n(r.baseline_p50_us)} | ${n(r.ratio, 2)} | ${yes(r.met)} | ${(r.pair_ratios ?? []).join(', ')} |`);
  out.push('');
}
const bal = recs.filter((r) => r.scenario === 'balancer-cycle' && !r.skipped);
if (bal.length) {
  out.push('| balancer-cycle c | ops/s | p50 µs | p99 µs | baseline ops/s | ratio (goal ≥ 0.85) | met | acquire p50 µs | relay p50 µs | acquire ÷ relay p50 (goal ≤ 1.25 at c=16) |', '|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|');
  for (const r of bal) out.push(`| ${r.concurrency} | ${n(r.ops_per_s)} | ${n(r.p50_us)} | ${n(r.p99_us)} | ${n(r.baseline_ops_per_s)} | ${n(r.ratio, 2)} | ${yes(r.met)} | ${n(r.acquire_p50_us)} | ${n(r.relay_p50_us)} | ${n(r.acquire_vs_relay_p50, 2)}${r.concurrency === 16 ? ` (${yes(r.acquire_vs_relay_met)})` : ''} |`);
  out.push('');
}
const usage = recs.filter((r) => r.cpu_us_per_op && r.cpu_us_per_op.subject);
if (usage.length) {
  out.push('| scenario | c | CPU µs per cycle, subject | CPU µs per cycle, baseline |', '|:--|---:|:--|:--|');
  for (const r of usage) out.push(`| ${r.scenario} | ${r.concurrency} | ${cpu(r.cpu_us_per_op.subject)} | ${cpu(r.cpu_us_per_op.baseline)} |`);
  out.push('');
}
for (const r of recs.filter((x) => x.scenario === 'balancer-replicas' && !x.skipped)) {
  out.push('| balancer-replicas (c=256) | 1 process ops/s | 2 processes ops/s | 2 ÷ 1 (median of pairs) | pairs |', '|:--|---:|---:|---:|:--|');
  out.push(`| Shoal balancers | ${n(r.ops_per_s_1)} | ${n(r.ops_per_s_2)} | ${n(r.ratio, 2)} | ${(r.pair_ratios ?? []).join(', ')} |`);
  out.push(`| bare relays | ${n(r.relay_ops_per_s_1)} | ${n(r.relay_ops_per_s_2)} | ${n(r.relay_ratio, 2)} | ${(r.relay_pair_ratios ?? []).join(', ')} |`, '');
}
const figs = recs.filter((r) => r.figure);
if (figs.length) {
  out.push('| figure | value | goal | met |', '|:--|---:|---:|:-:|');
  for (const r of figs) out.push(`| ${r.figure}${r.n ? ` (N=${r.n})` : ''}${r.via ? ` (${r.via}, ${n(r.acquires)} acquires)` : ''} | ${n(r.value, r.figure === 'reuse_rate' ? 4 : 0)} | ${r.figure === 'reuse_rate' ? `≥ ${r.goal}` : `≤ ${r.goal}`} | ${yes(r.met)} |`);
  out.push('');
}
for (const r of recs.filter((x) => x.skipped)) out.push(`- ${r.scenario}: skipped (${r.skipped})`);
process.stdout.write(out.join('\n') + '\n');
