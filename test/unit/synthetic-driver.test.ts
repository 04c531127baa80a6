import { expect } from 'chai';
import { syntheticDriver, type Driver } from '@shoal/pool-node';
import { FakeClock, seeded } from '../helpers/fake-clock.js';

/** Whether `p` has settled yet (after letting continuations run). */
function tracked<T>(p: Promise<T>): { done: () => boolean; value: Promise<T> } {
  let done = false;
  void p.then(() => { done = true; }, () => { done = true; });
  return { done: () => done, value: p };
}

describe('synthetic driver options (unit, fake clock)', () => {
  const exec = { emit() {}, signal: new AbortController().signal };

  it('create_latency and exec_latency (duration strings, as in the example config) delay create and every exec by that much', async () => {
    const clock = new FakeClock();
    const d = syntheticDriver({ clock, random: seeded(), options: { create_latency: '50ms', exec_latency: '20ms' }, poolName: 's' }) as Driver<unknown>;
    const created = tracked(d.create({ resourceId: 'r1', signal: new AbortController().signal }));
    await clock.advance(49);
    expect(created.done(), 'created before create_latency').to.equal(false);
    await clock.advance(1);
    expect(created.done()).to.equal(true);
    const r = await created.value;
    const ran = tracked(d.exec(r, 'echo', 'hi', exec));
    await clock.advance(19);
    expect(ran.done(), 'answered before exec_latency').to.equal(false);
    await clock.advance(1);
    expect(await ran.value).to.equal('hi');
  });

  it('without them (the default 0), create and exec answer at once', async () => {
    const clock = new FakeClock();
    const d = syntheticDriver({ clock, random: seeded(), options: {}, poolName: 's' }) as Driver<unknown>;
    const created = tracked(d.create({ resourceId: 'r1', signal: new AbortController().signal }));
    await clock.advance(0);
    expect(created.done()).to.equal(true);
    const ran = tracked(d.exec(await created.value, 'echo', 'hi', exec));
    await clock.advance(0);
    expect(ran.done()).to.equal(true);
  });
});
