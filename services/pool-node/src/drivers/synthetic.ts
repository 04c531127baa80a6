import { parseDuration } from '@shoal/config';
import { ErrorCodes, ShoalError } from '@shoal/protocol';
import type { Driver, DriverContext, ExecContext } from '../driver.js';

/**
 * A resource that is only a number: configurable create/exec latency and
 * failure rates, to load-test and demonstrate the pool machinery itself.
 *
 * options: create_latency, exec_latency, validate_latency (ms or '5ms'),
 * failure_rate (create), exec_failure_rate, validate_failure_rate (0..1),
 * memory_bytes (reported usage per resource).
 *
 * ops: echo {any} → args; sleep {ms}; stream {chunks, interval_ms} → emits
 * {chunk: i}; fail {message} → DRIVER_ERROR; info → the resource's counters;
 * fill {bytes} → a string that long (a small request, a large answer).
 */
interface Synthetic {
  id: string;
  execs: number;
  resets: number;
  dead: boolean;
}

/** A non-negative number of ms or a duration string ('5ms', '1.5s', '2m'); bad values stop start-up. */
const num = (v: unknown, dflt: number, key: string): number => {
  if (v === undefined || v === null) return dflt;
  try {
    const n = parseDuration(v as string | number, key);
    if (n >= 0) return n;
  } catch {
    // fall through to the typed error below
  }
  throw new ShoalError(ErrorCodes.BAD_REQUEST, `synthetic driver option ${key}: expected a non-negative number or duration, got ${JSON.stringify(v)}`);
};

export function syntheticDriver(ctx: DriverContext): Driver<Synthetic> {
  const o = ctx.options;
  const createMs = num(o.create_latency, 0, 'create_latency');
  const execMs = num(o.exec_latency, 0, 'exec_latency');
  const validateMs = num(o.validate_latency, 0, 'validate_latency');
  const failureRate = num(o.failure_rate, 0, 'failure_rate');
  const execFailureRate = num(o.exec_failure_rate, 0, 'exec_failure_rate');
  const validateFailureRate = num(o.validate_failure_rate, 0, 'validate_failure_rate');
  const memoryBytes = num(o.memory_bytes, 0, 'memory_bytes');
  const { clock, random } = ctx;

  const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve, reject) => {
    if (ms <= 0) return resolve();
    const t = clock.setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clock.clearTimeout(t); reject(signal!.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

  return {
    kind: 'synthetic',
    async create({ resourceId, signal }) {
      await sleep(createMs, signal);
      if (random() < failureRate) throw new Error('synthetic create failure');
      return { id: resourceId, execs: 0, resets: 0, dead: false };
    },
    async validate(r) {
      await sleep(validateMs);
      return !r.dead && !(random() < validateFailureRate);
    },
    async reset(r) {
      r.resets++;
    },
    async exec(r, op, args, { emit, signal }: ExecContext) {
      r.execs++;
      await sleep(execMs, signal);
      if (random() < execFailureRate) throw new Error('synthetic exec failure');
      const a = (args ?? {}) as Record<string, unknown>;
      switch (op) {
        case 'echo': return args ?? null;
        case 'sleep': await sleep(num(a.ms, 0, 'ms'), signal); return { slept: a.ms ?? 0 };
        case 'stream': {
          const n = num(a.chunks, 3, 'chunks');
          for (let i = 0; i < n; i++) {
            await sleep(num(a.interval_ms, 0, 'interval_ms'), signal);
            emit({ chunk: i });
          }
          return { chunks: n };
        }
        case 'fail': throw new Error(typeof a.message === 'string' ? a.message : 'requested failure');
        case 'kill': r.dead = true; return { dead: true };
        case 'info': return { id: r.id, execs: r.execs, resets: r.resets };
        case 'fill': return 'x'.repeat(Math.min(num(a.bytes, 0, 'bytes'), 64 * 1024 * 1024));
        default: throw new ShoalError(ErrorCodes.UNSUPPORTED_OP, `synthetic driver has no op ${op} (echo, sleep, stream, fail, kill, info, fill)`);
      }
    },
    async destroy(r) {
      r.dead = true;
    },
    usage() {
      return { memoryBytes };
    },
  };
}
