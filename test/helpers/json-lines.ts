import type { Readable } from 'node:stream';

export type LogRecord = Record<string, unknown>;

/**
 * Read a child's stdout as JSON lines (Shoal's logs), calling `onRecord` for
 * each; a line that is not JSON arrives as `{ raw: line }`.
 */
export function onJsonLines(stream: Readable, onRecord: (rec: LogRecord) => void): void {
  let buf = '';
  stream.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let rec: LogRecord;
      try { rec = JSON.parse(line) as LogRecord; } catch { rec = { raw: line }; }
      onRecord(rec);
    }
  });
}
