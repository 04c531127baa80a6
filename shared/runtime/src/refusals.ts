import { Counter, type Registry } from 'prom-client';
import { Metrics } from '@shoal/protocol';
import type { Logger } from './log.js';

/**
 * Messages a service refused without answering (a reply subject that is not
 * an inbox, a forged heartbeat...), counted by reason for a metric, and
 * logged at warn at most once per `everyMs` per reason: an attacker sending
 * 10,000 malformed messages gets 10,000 counts and a handful of log lines.
 */
export class Refusals {
  readonly counts = new Map<string, number>();
  private readonly lastLog = new Map<string, number>();

  constructor(private readonly log: Logger, private readonly everyMs = 10_000) {}

  refuse(reason: string, fields: Record<string, unknown> = {}): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    this.warn(reason, fields);
  }

  /** A rate-limited warning (per key), with how many were held back since the last one. */
  warn(key: string, fields: Record<string, unknown>, msg = 'refused'): void {
    const now = Date.now();
    const last = this.lastLog.get(key);
    if (last !== undefined && now - last < this.everyMs) {
      this.held.set(key, (this.held.get(key) ?? 0) + 1);
      return;
    }
    this.lastLog.set(key, now);
    const held = this.held.get(key) ?? 0;
    this.held.delete(key);
    if (this.lastLog.size > 1000) this.lastLog.clear();
    this.log.warn(msg, { reason: key, ...fields, ...(held > 0 ? { similarSinceLast: held } : {}) });
  }

  private readonly held = new Map<string, number>();
}

/** Export `refusals` as `shoal_refused_messages_total{reason}` in `registry` (read at scrape time). */
export function refusalCounter(registry: Registry, refusals: Refusals): void {
  new Counter({
    name: Metrics.REFUSED_TOTAL, help: 'Messages refused unanswered, by reason', labelNames: ['reason'], registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of refusals.counts) this.inc({ reason }, n);
    },
  });
}
