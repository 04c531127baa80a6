/** Time as the pool sees it: injected so that unit tests run on a fake clock. */
export interface Timer { readonly __timer?: never }
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(t: Timer | undefined): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // Pool timers must never keep a process alive on their own.
    t.unref?.();
    return t as unknown as Timer;
  },
  clearTimeout: (t) => { if (t) clearTimeout(t as unknown as NodeJS.Timeout); },
};
