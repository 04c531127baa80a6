import { placeable, preferIdle } from './load.js';
import type { Candidate, Strategy, StrategyName } from './types.js';

/** Applies the rules every strategy shares, so each one only ranks a non-empty list. */
export abstract class BaseStrategy implements Strategy {
  abstract readonly name: StrategyName;

  select(list: readonly Candidate[]): Candidate | undefined {
    const usable = preferIdle(placeable(list));
    return usable.length > 0 ? this.pick(usable) : undefined;
  }

  /** `list` is non-empty, weight > 0, and idle-first already applied. */
  protected abstract pick(list: readonly Candidate[]): Candidate;
}
