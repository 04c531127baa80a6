import { expect } from 'chai';
import { createLogger, Refusals } from '@shoal/runtime';

describe('refusals (counted, logged at warn, rate-limited)', () => {
  it('counts every refusal but logs one warn line per reason per period, then says how many were held back', async () => {
    const lines: Record<string, unknown>[] = [];
    const r = new Refusals(createLogger({}, 'debug', (l) => lines.push(JSON.parse(l))), 50);
    for (let i = 0; i < 1000; i++) r.refuse('reply_not_inbox', { subject: 's' });
    r.refuse('heartbeat_started_in_future');
    expect(r.counts.get('reply_not_inbox')).to.equal(1000);
    expect(lines.map((l) => [l.level, l.reason])).to.deep.equal([['warn', 'reply_not_inbox'], ['warn', 'heartbeat_started_in_future']]);
    await new Promise((res) => setTimeout(res, 60));
    r.refuse('reply_not_inbox');
    expect(lines.at(-1)).to.include({ level: 'warn', reason: 'reply_not_inbox', similarSinceLast: 999 });
    expect(lines.every((l) => !JSON.stringify(l).includes('    at '))).to.equal(true);
  });
});
