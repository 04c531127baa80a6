import { decode, type Subjects } from '@shoal/protocol';
import type { NatsSettings } from '@shoal/runtime';
import { openNats } from './cluster.js';
import type { Color } from './format.js';

/** What `shoal up --follow-desired` may do with its own pool-nodes. */
export interface NodeControl {
  running(): number;
  /** Start one pool-node; resolves with its name once it is ready. */
  start(): Promise<string>;
  /** Drain and stop one pool-node (the newest); resolves with its name once it has exited. */
  drain(): Promise<string | undefined>;
}

/** One step towards the desired count: one node at a time, never below one. */
export function followStep(desired: number, running: number): 'start' | 'drain' | 'hold' {
  if (desired > running) return 'start';
  if (desired < running && running > 1) return 'drain';
  return 'hold';
}

/**
 * Follow `<prefix>.autoscaler.desired.<pool>` as docker compose `--scale` or
 * a Kubernetes autoscaler would: start a pool-node when the leader asks for
 * more, drain one when it asks for fewer, one at a time, each step finished
 * (ready, or exited) before the next is considered.
 */
export async function followDesired(natsUrl: string, s: Subjects, pool: string, nodes: NodeControl, say: (line: string, color?: Color) => void, auth: Omit<NatsSettings, 'servers'> = {}): Promise<{ stop(): Promise<void> }> {
  // The admin role with roles on: it listens to the autoscaler's subjects.
  const nc = await openNats(natsUrl, 5000, auth);
  let desired: number | undefined;
  let busy = false;
  let stopped = false;
  const step = async (): Promise<void> => {
    if (busy || stopped || desired === undefined) return;
    busy = true;
    try {
      for (;;) {
        if (stopped) return;
        const want = desired;
        const have = nodes.running();
        const what = followStep(want, have);
        if (what === 'hold') return;
        say(`follow-desired ${pool}: ${want} pool-node(s) desired, ${have} running: ${what === 'start' ? 'starting one' : 'draining one'}`, 'yellow');
        const name = what === 'start' ? await nodes.start() : await nodes.drain();
        say(`follow-desired ${pool}: ${name ?? 'nothing'} ${what === 'start' ? 'started' : 'drained'}`, 'yellow');
      }
    } catch (err) {
      say(`follow-desired ${pool}: ${(err as Error).message}`, 'red');
    } finally {
      busy = false;
    }
  };
  const sub = nc.subscribe(s.autoscalerDesired(pool), {
    callback: (err, msg) => {
      if (err) return;
      try {
        const m = decode(msg.data);
        if (typeof m.desired === 'number' && Number.isInteger(m.desired) && m.desired >= 0) desired = m.desired;
      } catch { return; }
      void step();
    },
  });
  say(`following the desired pool-nodes of ${pool} (${s.autoscalerDesired(pool)})`);
  return {
    async stop() {
      stopped = true;
      sub.unsubscribe();
      await nc.close().catch(() => {});
    },
  };
}
