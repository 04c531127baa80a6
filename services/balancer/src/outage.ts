import type { NatsConnection } from '@shoal/runtime';

/**
 * A balancer's view after its own NATS outage. While disconnected it hears
 * no heartbeat, so silence says nothing about the nodes: membership is frozen
 * (see Membership.freeze). After reconnecting, nodes may not be back on NATS
 * yet (a restarted server loses their subscriptions until they reconnect), so
 * for a bounded time only nodes heard since the reconnect are placed on, and
 * a request that finds none waits for them instead of failing with NO_NODES.
 * Pure apart from the clock the caller passes in.
 */
export class Rewarm {
  private until = 0;
  private readonly heard = new Set<string>();

  /** `boundMs()`: how long to wait for fresh heartbeats (about one heartbeat interval and a reconnect). */
  constructor(private readonly boundMs: () => number) {}

  reconnected(now: number): void {
    this.until = now + this.boundMs();
    this.heard.clear();
  }

  heardFrom(nodeId: string): void {
    if (this.until > 0) this.heard.add(nodeId);
  }

  /** Still waiting for fresh heartbeats? */
  active(now: number): boolean {
    if (this.until > 0 && now >= this.until) {
      this.until = 0;
      this.heard.clear();
    }
    return this.until > 0;
  }

  /** May a request be placed on this node now? */
  allows(nodeId: string, now: number): boolean {
    return !this.active(now) || this.heard.has(nodeId);
  }
}

/** Call `on.disconnect` / `on.reconnect` as the connection goes down and comes back. */
export function watchConnection(nc: NatsConnection, on: { disconnect(): void; reconnect(): void }): void {
  void (async () => {
    for await (const st of nc.status()) {
      if (st.type === 'disconnect') on.disconnect();
      else if (st.type === 'reconnect') on.reconnect();
    }
  })().catch(() => {});
}
