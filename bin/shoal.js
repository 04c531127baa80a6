#!/usr/bin/env node
// `npx shoal` in this repository: the CLI lives in services/cli; build it first on a fresh clone.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'services', 'cli', 'dist', 'main.js');

if (!existsSync(main)) {
  process.stderr.write('shoal: first run, building the workspace once (tsc -b)...\n');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const [cmd, args] = existsSync(tsc) ? [process.execPath, [tsc, '-b']] : ['npx', ['--no-install', 'tsc', '-b']];
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(main)) {
    process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').filter((l) => l && !l.startsWith('npm warn')).slice(-20).join('\n') + '\n');
    process.stderr.write(`shoal: the build failed${r.error ? ` (${r.error.message})` : ''}; run \`npm install\` then \`npx tsc -b\` in ${root}\n`);
    process.exit(1);
  }
}

await import(pathToFileURL(main).href);
