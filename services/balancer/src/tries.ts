import { BACKEND_DOWN, encode, ErrorCodes, PROTOCOL_VERSION, ShoalError, type ErrorCode } from '@shoal/protocol';
import type { Requester } from '@shoal/runtime';

/**
 * How long a try on a node may go unanswered before the balancer asks the
 * node whether it is still there (issue 9: a node's death costs at most one
 * try). Derived from the node's own acquire latency (EWMA from its
 * heartbeat): a live node answers a cheap status request within about that
 * time even while the acquire itself waits in its queue. docs/balancer.md
 * says why this and not a hedged second try.
 */
export function tryBudgetMs(latencyMs: number | undefined): number {
  const l = typeof latencyMs === 'number' && Number.isFinite(latencyMs) && latencyMs > 0 ? latencyMs : 0;
  return Math.round(Math.min(MAX_BUDGET_MS, Math.max(MIN_BUDGET_MS, 4 * l + 50)));
}

export const MIN_BUDGET_MS = 100;
export const MAX_BUDGET_MS = 1000;
/** Between two checks of a node that answered, while the try still waits. */
export const RECHECK_MS = 250;
/** How long the liveness question may take: a node that cannot answer it in this time is not answering. */
export function checkTimeoutMs(remaining: number): number {
  return Math.round(Math.max(250, Math.min(1000, remaining / 4)));
}

/**
 * "Is node X alive?", asked with a request to its status subject. One
 * question per node at a time, shared by every try waiting on it: a SIGKILLed
 * node's subjects answer "no responders" at once, a hung one not at all.
 */
export class Liveness {
  private readonly asking = new Map<string, Promise<boolean>>();

  constructor(private readonly requester: Requester, private readonly statusSubject: (nodeId: string) => string) {}

  alive(nodeId: string, timeoutMs: number): Promise<boolean> {
    let p = this.asking.get(nodeId);
    if (p) return p;
    p = this.requester.request(this.statusSubject(nodeId), encode({ v: PROTOCOL_VERSION }), timeoutMs).then(() => true, () => false);
    this.asking.set(nodeId, p);
    void p.finally(() => this.asking.delete(nodeId));
    return p;
  }

  /**
   * Watch a try: after `budget` with no answer, ask whether the node is
   * alive; if not, call `dead` (which abandons the try); else ask again
   * every RECHECK_MS. Returns the function that stops watching.
   */
  watch(nodeId: string, budget: number, remaining: number, dead: (err: ShoalError) => void): () => void {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const arm = (ms: number) => {
      timer = setTimeout(() => {
        void this.alive(nodeId, checkTimeoutMs(remaining)).then((ok) => {
          if (stopped) return;
          if (ok) { arm(Math.max(budget, RECHECK_MS)); return; }
          dead(new ShoalError(ErrorCodes.UNAVAILABLE, `node ${nodeId} stopped answering (no answer to a liveness check after ${budget} ms)`, { details: { reason: 'not_answering', nodeId } }));
        });
      }, ms);
      timer.unref?.();
    };
    arm(budget);
    return () => { stopped = true; clearTimeout(timer); };
  }
}

/**
 * After every candidate failed, is another round (after a backoff) worth
 * it? Not when they said their backend is down: it will not be up in a few
 * milliseconds, and the caller wants that error now, not at its deadline.
 */
export function retryRound(lastCode: ErrorCode | undefined): boolean {
  return lastCode === undefined || !BACKEND_DOWN.has(lastCode);
}
