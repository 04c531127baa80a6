import type { CliMessage } from './lines.js';
import type { TurnOutcome } from './session.js';

/**
 * Results that say no turn can succeed until an operator acts: the CLI is
 * not logged in, its key is refused, its token expired, the account has no
 * credit. Seen in the `result` text of a failed turn (`is_error: true`).
 */
const ACCOUNT = /not logged in|run \/login|invalid api key|authentication_error|oauth token (has )?expired|credit balance is too low/i;

/**
 * The Claude backend as this pool's turns last saw it, for the health probe:
 * down from a turn failing for the account, up again at the next successful
 * turn. (A CLI that cannot start shows in the pool's own availability.)
 */
export class ClaudeBackend {
  private problem: string | undefined;

  turn(outcome: TurnOutcome, result?: CliMessage): void {
    if (outcome === 'success') { this.problem = undefined; return; }
    const text = typeof result?.result === 'string' ? result.result : '';
    if (result?.is_error === true && ACCOUNT.test(text)) this.problem = text.slice(0, 300);
  }

  state(): { healthy: boolean; reason?: string } {
    return this.problem === undefined ? { healthy: true } : { healthy: false, reason: `Claude CLI: ${this.problem}` };
  }
}
