import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Write a node config YAML with one synthetic pool; returns its path. */
export function writeConfig(pool: Record<string, unknown>, extra = ''): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-cfg-'));
  const file = join(dir, 'node.yaml');
  const lines = Object.entries(pool).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`).join('\n');
  writeFileSync(file, `node:\n  heartbeat_interval: 200ms\n  drain_grace: 5s\n${extra}\npools:\n  synthetic:\n    driver: synthetic\n${lines}\n`);
  return file;
}
