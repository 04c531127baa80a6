import { BaseStrategy } from './base.js';
import { loadOf, pickMin } from './load.js';
import type { Candidate } from './types.js';

/** Fewest outstanding requests per slot; ties rotate so equal nodes share a burst. */
export class LeastConnections extends BaseStrategy {
  readonly name = 'least_connections' as const;
  private turn = 0;

  protected pick(list: readonly Candidate[]): Candidate {
    return pickMin(list, loadOf, this.turn++)!;
  }
}
