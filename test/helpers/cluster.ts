import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dirs: string[] = [];
// The folders live as long as the test run: the processes given them may read them at any time.
process.on('exit', () => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** Write a node config YAML with one synthetic pool; returns its path (removed when the test process exits). */
export function writeConfig(pool: Record<string, unknown>, extra = ''): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-cfg-'));
  dirs.push(dir);
  const file = join(dir, 'node.yaml');
  const lines = Object.entries(pool).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`).join('\n');
  writeFileSync(file, `node:\n  heartbeat_interval: 200ms\n  drain_grace: 5s\n${extra}\npools:\n  synthetic:\n    driver: synthetic\n${lines}\n`);
  return file;
}
