/**
 * The CLI's stdout protocol: one JSON object per line. These are pure and
 * synchronous (unit-tested in test/unit/claude-lines.test.ts); the session
 * feeds them decoded text (the stream's utf8 decoder keeps multi-byte
 * characters whole across chunks).
 */

/** What a JSON line of the CLI looks like to the driver: an object with a `type`. */
export interface CliMessage {
  type: string;
  subtype?: string;
  [k: string]: unknown;
}

export interface LineStats {
  /** Lines that were not a JSON object (progress noise, a crash's stack trace); skipped. */
  nonJson: number;
  /** Lines longer than the limit; dropped whole. */
  oversized: number;
  /** The first bytes of the last skipped line, for error reports. */
  lastSkipped: string | undefined;
}

/**
 * Splits a text stream into lines and parses each as a JSON object; calls
 * `onMessage` for each object in order (with its text). Anything else is
 * counted and skipped. A line longer than `maxLineChars` is dropped (and
 * counted) without being held in memory beyond the limit.
 *
 * With `raw` set, lines that look like JSON objects and that the driver does
 * not act on (see `needsParse`: most are `stream_event` deltas) are handed to
 * `raw` as text, unparsed: the holder parses them (the `raw` send mode).
 */
export class LineReader {
  readonly stats: LineStats = { nonJson: 0, oversized: 0, lastSkipped: undefined };
  raw: ((line: string) => void) | undefined;
  private buf = '';
  private discarding = false;

  constructor(
    private readonly onMessage: (m: CliMessage, line: string) => void,
    private readonly maxLineChars = 64 * 1024 * 1024,
    private readonly onSkip?: () => void,
  ) {}

  push(chunk: string): void {
    let start = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', start)) {
      const piece = chunk.slice(start, nl);
      start = nl + 1;
      if (this.discarding) { this.discarding = false; this.buf = ''; continue; }
      const line = this.buf.length ? this.buf + piece : piece;
      this.buf = '';
      if (line.length > this.maxLineChars) { this.oversized(line); continue; }
      this.line(line);
    }
    if (start < chunk.length) {
      if (this.discarding) return;
      this.buf += chunk.slice(start);
      if (this.buf.length > this.maxLineChars) { this.oversized(this.buf); this.buf = ''; this.discarding = true; }
    }
  }

  /** End of stream: a last line without its newline still counts. */
  end(): void {
    if (!this.discarding && this.buf.length) this.line(this.buf);
    this.buf = '';
    this.discarding = false;
  }

  private oversized(line: string): void {
    this.stats.oversized++;
    this.stats.lastSkipped = line.slice(0, 200);
    this.onSkip?.();
  }

  private line(raw: string): void {
    if (this.raw && raw.charCodeAt(0) === 123 /* { */ && !needsParse(raw)) { this.raw(raw); return; }
    const m = parseLine(raw);
    if (m) { this.onMessage(m, raw); return; }
    if (raw.trim() === '') return;
    this.stats.nonJson++;
    this.stats.lastSkipped = raw.slice(0, 200);
    this.onSkip?.();
  }
}

/**
 * Whether the driver must read a line: a turn's `result`, control requests
 * and responses, `system`/`init` (session id, model), `conversation_reset`.
 * A false positive only costs a parse; JSON.stringify writes no spaces, and
 * a quote inside a string value is escaped, so these keys cannot hide.
 */
const MUST_PARSE = /"type":"(?:result|control_request|control_response|conversation_reset|rate_limit_event)"|"subtype":"(?:init|api_retry)"/;
export function needsParse(line: string): boolean {
  return MUST_PARSE.test(line);
}

/** A JSON object with a string `type`, or undefined for anything else (blank, non-JSON, arrays, scalars). */
export function parseLine(raw: string): CliMessage | undefined {
  const s = raw.trimStart();
  if (s[0] !== '{') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { type?: unknown }).type !== 'string') return undefined;
  return v as CliMessage;
}

/** The last `limit` characters of a stream (stderr), for error reports; holds at most about twice the limit. */
export class Tail {
  private text = '';

  constructor(private readonly limit = 8192) {}

  push(chunk: string): void {
    if (this.limit <= 0) return;
    this.text += chunk;
    if (this.text.length > 2 * this.limit) this.text = this.text.slice(-this.limit);
  }

  toString(): string {
    return this.text.length > this.limit ? this.text.slice(-this.limit) : this.text;
  }

  clear(): void {
    this.text = '';
  }
}

/** Token counts of a `result` line's `usage`, zero where absent. */
export function usageOf(result: CliMessage): { input: number; output: number; cacheRead: number; cacheCreation: number; costUsd: number } {
  const u = (typeof result.usage === 'object' && result.usage !== null ? result.usage : {}) as Record<string, unknown>;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
  return {
    input: n(u.input_tokens),
    output: n(u.output_tokens),
    cacheRead: n(u.cache_read_input_tokens),
    cacheCreation: n(u.cache_creation_input_tokens),
    costUsd: n(result.total_cost_usd),
  };
}
