/**
 * Summarise a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench --
 * --profile=<dir>`): self time by function and by source (package or file),
 * and the inclusive time of the functions named on the command line.
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile> [--top=25] [fnName | 'fnName path/prefix' ...]
 */
import { readFileSync } from 'node:fs';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
if (!file) { process.stderr.write('usage: profile-summary <file.cpuprofile> [--top=N] [fnName ...]\n'); process.exit(2); }
const top = Number(args.find((a) => a.startsWith('--top='))?.slice(6) ?? 25);
const named = args.filter((a) => !a.startsWith('--') && a !== file);

const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const self = new Map<number, number>();
let total = 0;
prof.samples.forEach((id, i) => {
  const dt = prof.timeDeltas[i] ?? 0;
  self.set(id, (self.get(id) ?? 0) + dt);
  total += dt;
});

function source(url: string): string {
  if (!url) return '(native/v8)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) { const rest = url.slice(nm + 13).split('/'); return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!; }
  if (url.startsWith('node:')) return url;
  const m = /\/(shared|services)\/([^/]+)\//.exec(url);
  return m ? `@shoal/${m[2]}` : url.replace(/^file:\/\//, '');
}
const label = (cf: CallFrame) => `${cf.functionName || '(anonymous)'} ${cf.url ? `${cf.url.replace(/^.*\/(node_modules|shared|services)\//, '$1/')}:${cf.lineNumber + 1}` : ''}`;

const fnSelf = new Map<string, number>();
const srcSelf = new Map<string, number>();
for (const [id, t] of self) {
  const cf = byId.get(id)!.callFrame;
  fnSelf.set(label(cf), (fnSelf.get(label(cf)) ?? 0) + t);
  srcSelf.set(source(cf.url), (srcSelf.get(source(cf.url)) ?? 0) + t);
}
const idle = [...self].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
const busy = total - idle;
// Percentages are of the busy (non-idle) time: what the process spent its CPU on.
const pct = (t: number) => `${((100 * t) / busy).toFixed(1).padStart(5)}%`;
console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms busy (${((100 * busy) / total).toFixed(1)}%); percentages below are of busy time`);
fnSelf.delete('(idle) ');
srcSelf.set('(native/v8)', (srcSelf.get('(native/v8)') ?? 0) - idle);
console.log('\nself time by source:');
for (const [s, t] of [...srcSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${s}`);
console.log('\nself time by function:');
for (const [f, t] of [...fnSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${f}`);

if (named.length) {
  console.log('\ninclusive time (samples under a frame with this function name):');
  for (const name of named) {
    let t = 0;
    for (const [id, dt] of self) {
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const cf = byId.get(cur)!.callFrame;
        if (name.includes(' ') ? label(cf).startsWith(name) : cf.functionName === name) { t += dt; break; }
      }
    }
    console.log(`  ${pct(t)}  ${name}`);
  }
}
