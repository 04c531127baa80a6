/**
 * Something a suite needs that may be absent on a developer's machine (the
 * real Claude CLI, a built service). Call it inside `describe`.
 *
 * Present: true. Missing under CI=true: registers a failing test and returns
 * false, so CI cannot pass without it. Missing elsewhere: says so loudly on
 * stderr and returns false; the caller then registers nothing (mocha's
 * forbid-pending forbids `this.skip()`).
 */
export function prerequisite(what: string, present: boolean, hint: string): boolean {
  if (present) return true;
  if (process.env.CI === 'true') {
    it(`has ${what}`, () => { throw new Error(`${what} is missing (${hint}); under CI=true the tests that need it must run`); });
  } else {
    process.stderr.write(`\n  !!! NOT RUN: ${what} is missing (${hint}); the tests that need it did not run. Under CI=true this fails.\n\n`);
  }
  return false;
}
