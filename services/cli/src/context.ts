import { subjects, type Subjects } from '@shoal/protocol';
import { connect as connectClient, type Client } from '@shoal/client';
import { closeNats, type NatsConnection, type NatsSettings } from '@shoal/runtime';
import type { FlagSpecs, FlagValues } from './args.js';
import { openNats } from './cluster.js';

/** Exit codes scripts can rely on (docs/cli.md). */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, UNREACHABLE: 3, INTERRUPTED: 130 } as const;

/** What every command gets: output, the global flags, and a lazily opened connection. */
export class Ctx {
  readonly s: Subjects;
  private nc: NatsConnection | undefined;
  private client: Client | undefined;

  constructor(
    readonly natsUrl: string,
    readonly prefix: string,
    readonly json: boolean,
    /** `--timeout`, if given. */
    readonly timeoutMs: number | undefined,
    readonly stdout: NodeJS.WriteStream = process.stdout,
    readonly stderr: NodeJS.WriteStream = process.stderr,
    /** How the CLI authenticates (nats-auth.ts cliAuth): the admin role under `shoal up`. */
    readonly auth: Omit<NatsSettings, 'servers'> = {},
  ) {
    this.s = subjects(prefix);
  }

  out(line = ''): void {
    this.stdout.write(line + '\n');
  }

  /** One JSON document per line. */
  emit(v: unknown): void {
    this.stdout.write(JSON.stringify(v) + '\n');
  }

  /** Progress and notes for people: stderr, and nothing with --json. */
  note(line: string): void {
    if (!this.json) this.stderr.write(line + '\n');
  }

  timeout(dflt: number): number {
    return this.timeoutMs ?? dflt;
  }

  async nats(): Promise<NatsConnection> {
    // The connection gets its own bound: a short --timeout is for the request, not for the TCP handshake.
    this.nc ??= await openNats(this.natsUrl, Math.max(2000, Math.min(this.timeout(5000), 10_000)), this.auth);
    return this.nc;
  }

  async sdk(): Promise<Client> {
    this.client ??= await connectClient({ nc: await this.nats(), prefix: this.prefix, name: 'shoal-cli' });
    return this.client;
  }

  async close(): Promise<void> {
    await this.client?.close().catch(() => {});
    if (this.nc) await closeNats(this.nc);
  }
}

export interface Command {
  name: string;
  /** e.g. `<pool> [--hold ms]`, shown after `shoal <name>`. */
  usage: string;
  summary: string;
  /** More lines for `--help`. */
  details?: string;
  flags: FlagSpecs;
  /** Positional arguments after the command name. */
  args: [min: number, max: number];
  run(ctx: Ctx, args: string[], flags: FlagValues): Promise<number>;
}
