import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineReader, parseLine, parseVmRss, Tail, usageOf, type CliMessage } from '../../services/pool-node/src/drivers/claude-cli/index.js';
import { ROOT } from '../helpers/procs.js';

function reader(max?: number) {
  const got: CliMessage[] = [];
  const r = new LineReader((m) => got.push(m), max);
  return { r, got };
}

describe('claude-cli line protocol', () => {
  it('parses JSON objects with a type; everything else is not a message', () => {
    expect(parseLine('{"type":"result","subtype":"success"}')).to.deep.equal({ type: 'result', subtype: 'success' });
    expect(parseLine('  {"type":"x"}  ')).to.deep.equal({ type: 'x' });
    for (const s of ['', 'npm WARN x', '[1,2]', '"str"', '42', '{"no_type":1}', '{"type":7}', '{"type":"x"', '\u001b[2K⠋']) expect(parseLine(s), s).to.equal(undefined);
  });

  it('splits lines across chunks, in order, and counts what it skips', () => {
    const { r, got } = reader();
    r.push('{"type":"a"}\n{"ty');
    r.push('pe":"b","t":"é');
    r.push('"}\ngarbage\n\n[1]\n{"type":"c"}');
    expect(got.map((m) => m.type)).to.deep.equal(['a', 'b']);
    expect(got[1]!.t).to.equal('é');
    r.end();
    expect(got.map((m) => m.type)).to.deep.equal(['a', 'b', 'c']);
    expect(r.stats.nonJson).to.equal(2);
    expect(r.stats.lastSkipped).to.equal('[1]');
  });

  it('drops an oversized line whole without holding it, and resumes at the next line', () => {
    const { r, got } = reader(100);
    r.push('{"type":"a"}\n' + 'x'.repeat(80));
    r.push('y'.repeat(80));
    r.push('z'.repeat(500));
    r.push('still the long line\n{"type":"b"}\n');
    r.push('{"type":"c","pad":"' + 'p'.repeat(200) + '"}\n{"type":"d"}\n');
    expect(got.map((m) => m.type)).to.deep.equal(['a', 'b', 'd']);
    expect(r.stats.oversized).to.equal(2);
  });

  it('reads the recorded real CLI exchange line by line, whatever the chunking', () => {
    const recording = readFileSync(join(ROOT, 'test', 'stand-ins', 'claude', 'real-2.1.197-no-network.jsonl'), 'utf8');
    const stdout = recording.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.dir === 'stdout').map((r) => JSON.stringify(r.line) + '\n').join('');
    for (const size of [1, 7, 4096, stdout.length]) {
      const { r, got } = reader();
      for (let i = 0; i < stdout.length; i += size) r.push(stdout.slice(i, i + size));
      r.end();
      expect(got.map((m) => `${m.type}${m.subtype ? '/' + m.subtype : ''}`)).to.deep.equal([
        'control_response', 'system/init', 'system/api_retry', 'system/api_retry', 'system/api_retry', 'control_response', 'user',
        'result/error_during_execution', 'system/init', 'assistant', 'result/success',
      ]);
      expect(r.stats.nonJson).to.equal(0);
    }
  });

  it('keeps the tail of stderr', () => {
    const t = new Tail(10);
    t.push('0123456789');
    t.push('abcdef');
    expect(t.toString()).to.equal('6789abcdef');
    for (let i = 0; i < 1000; i++) t.push('xy');
    expect(t.toString()).to.equal('xyxyxyxyxy');
    expect(new Tail(0).toString()).to.equal('');
  });

  it('reads usage and cost from a result line, and RSS from /proc status', () => {
    expect(usageOf({ type: 'result', usage: { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 3, cache_creation_input_tokens: 2 }, total_cost_usd: 0.01 }))
      .to.deep.equal({ input: 10, output: 5, cacheRead: 3, cacheCreation: 2, costUsd: 0.01 });
    expect(usageOf({ type: 'result' })).to.deep.equal({ input: 0, output: 0, cacheRead: 0, cacheCreation: 0, costUsd: 0 });
    expect(parseVmRss('Name:\tclaude\nVmPeak:\t  300 kB\nVmRSS:\t  217636 kB\n')).to.equal(217636 * 1024);
    expect(parseVmRss('Name:\tzombie\n')).to.equal(undefined);
  });
});
