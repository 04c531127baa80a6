import { parseHealthVerdict, type HealthVerdict } from '@shoal/protocol';
import type { Logger } from '@shoal/runtime';
import type { Membership } from './membership.js';

/**
 * The health-checkers' verdicts as this replica knows them, from their
 * subject and from the settings bucket (read before the replica serves, so a
 * restarted balancer skips an unhealthy node at once). The newest verdict per
 * node (by the checker's `at`) is in force; membership is told, and told
 * again when a node it had dropped comes back. Off the hot path: verdicts are
 * applied as they arrive, placement only reads membership.
 */
export class HealthView {
  private readonly verdicts = new Map<string, HealthVerdict>();

  constructor(private readonly membership: Membership, private readonly log: Logger) {}

  /** A verdict message on `<prefix>.health.verdict.<nodeId>`. */
  onMessage(data: Uint8Array): void {
    let v: HealthVerdict;
    try {
      v = parseHealthVerdict(data);
    } catch (err) {
      this.log.debug('ignoring a bad health verdict', { err: (err as Error).message });
      return;
    }
    this.apply(v.nodeId, v);
  }

  /** A verdict (or its deletion: undefined) for a node; an older one than in force is ignored. */
  apply(nodeId: string, v: HealthVerdict | undefined): void {
    const prev = this.verdicts.get(nodeId);
    if (v === undefined) {
      this.verdicts.delete(nodeId);
      this.membership.markUnhealthy(nodeId, false);
      this.membership.markPoolsUnhealthy(nodeId, []);
      return;
    }
    if (prev && prev.at > v.at) return;
    this.verdicts.set(nodeId, v);
    this.tell(nodeId, v);
    const poolsDown = (x: HealthVerdict | undefined) => Object.entries(x?.pools ?? {}).filter(([, p]) => !p.healthy).map(([n]) => n).sort().join(',');
    if (prev?.healthy !== v.healthy || poolsDown(prev) !== poolsDown(v)) {
      this.log[v.healthy ? 'info' : 'warn']('node health verdict', { nodeId, healthy: v.healthy, reason: v.reason, poolsDown: poolsDown(v) || undefined, checkerId: v.checkerId });
    }
  }

  /** Membership forgot the node (gone) and it is back: its verdict still stands until a checker says otherwise. */
  reapply(nodeId: string): void {
    const v = this.verdicts.get(nodeId);
    if (v) this.tell(nodeId, v);
  }

  of(nodeId: string): HealthVerdict | undefined {
    return this.verdicts.get(nodeId);
  }

  private tell(nodeId: string, v: HealthVerdict): void {
    this.membership.markUnhealthy(nodeId, !v.healthy);
    this.membership.markPoolsUnhealthy(nodeId, Object.entries(v.pools).filter(([, p]) => !p.healthy).map(([n]) => n));
  }
}
