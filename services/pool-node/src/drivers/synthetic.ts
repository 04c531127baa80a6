import { parseDuration } from '@shoal/config';
import { ErrorCodes, MAX_TIMEOUT_MS, ShoalError } from '@shoal/protocol';
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

/** Longest a stream runs without yielding to the event loop. */
const YIELD_EVERY_MS = 4;
/** Largest `fill` answer: more than NATS carries by default, small enough to build in a few ms. */
const MAX_FILL_BYTES = 4 * 1024 * 1024;

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

  /** A wait longer than any deadline is a mistake, not a load test (and over 2^31 ms, setTimeout fires at once). */
  const waitMs = (v: unknown, key: string): number => {
    const n = num(v, 0, key);
    if (n > MAX_TIMEOUT_MS) throw new ShoalError(ErrorCodes.BAD_REQUEST, `synthetic ${key}: at most ${MAX_TIMEOUT_MS} ms, got ${n}`, { details: { field: key } });
    return n;
  };

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
        case 'sleep': await sleep(waitMs(a.ms, 'ms'), signal); return { slept: a.ms ?? 0 };
        case 'stream': {
          const n = Math.floor(num(a.chunks, 3, 'chunks'));
          const interval = waitMs(a.interval_ms, 'interval_ms');
          // Without an interval, yield to the event loop every few ms: the node
          // keeps answering (and the deadline's abort can fire) during a long stream.
          let slice = performance.now();
          for (let i = 0; i < n; i++) {
            if (signal.aborted) throw signal.reason;
            if (interval > 0) await sleep(interval, signal);
            else if ((i & 255) === 255 && performance.now() - slice > YIELD_EVERY_MS) {
              await new Promise<void>((r) => setImmediate(r));
              slice = performance.now();
            }
            emit({ chunk: i });
          }
          return { chunks: n };
        }
        case 'fail': throw new Error(typeof a.message === 'string' ? a.message : 'requested failure');
        case 'kill': r.dead = true; return { dead: true };
        case 'info': return { id: r.id, execs: r.execs, resets: r.resets };
        case 'fill': {
          const bytes = num(a.bytes, 0, 'bytes');
          if (bytes > MAX_FILL_BYTES) throw new ShoalError(ErrorCodes.BAD_REQUEST, `synthetic fill: at most ${MAX_FILL_BYTES} bytes, got ${bytes}`, { details: { field: 'bytes' } });
          return 'x'.repeat(bytes);
        }
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
