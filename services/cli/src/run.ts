import { DEFAULT_PREFIX, ErrorCodes, ShoalError } from '@shoal/protocol';
import { flagHelp, intFlag, parseArgs, suggest, UsageError, type FlagSpecs } from './args.js';
import { HINT, isNoResponders, UnreachableError } from './cluster.js';
import { COMMANDS } from './commands.js';
import { OPERATOR_COMMANDS } from './operator-commands.js';
import { CREDS_COMMANDS } from './creds-command.js';
import { Ctx, EXIT, type Command } from './context.js';
import { cliAuth } from './nats-auth.js';
import { ROOT, up } from './up.js';

export const GLOBAL_FLAGS: FlagSpecs = {
  nats: { type: 'string', arg: 'url', help: 'NATS server(s), comma-separated (default: $SHOAL_NATS_URL or nats://127.0.0.1:4222)' },
  prefix: { type: 'string', arg: 'prefix', help: `subject prefix (default: $SHOAL_PREFIX or ${DEFAULT_PREFIX})` },
  json: { type: 'boolean', help: 'machine-readable output: JSON on stdout' },
  timeout: { type: 'number', arg: 'ms', help: 'deadline of the request (default 5000; strategy and weight 15000; acquire and exec 30000)' },
  help: { type: 'boolean', short: 'h', help: 'help for the command' },
};

export const ALL_COMMANDS: Command[] = [up, ...COMMANDS, ...OPERATOR_COMMANDS, ...CREDS_COMMANDS];

function generalHelp(): string {
  const w = Math.max(...ALL_COMMANDS.map((c) => c.name.length));
  return [
    'shoal: operate a Shoal cluster (a distributed resource pool on NATS)',
    '',
    'usage: shoal <command> [args] [options]',
    '',
    'commands:',
    ...ALL_COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'global options:',
    flagHelp(GLOBAL_FLAGS),
    '',
    'exit codes: 0 ok, 1 operation failed, 2 usage error, 3 cluster not reachable.',
    'Run `shoal <command> --help` for a command\'s options; docs/cli.md has the details.',
  ].join('\n');
}

export function commandHelp(c: Command): string {
  const lines = [`usage: shoal ${c.name}${c.usage ? ' ' + c.usage : ''} [options]`, '', c.summary];
  if (c.details) lines.push(c.details);
  if (Object.keys(c.flags).length > 0) lines.push('', 'options:', flagHelp(c.flags));
  lines.push('', 'global options:', flagHelp(GLOBAL_FLAGS));
  return lines.join('\n');
}

/** Index of the command word: the first positional, skipping global flags and their values. */
function commandIndex(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!;
    if (t === '--') return i + 1 < argv.length ? i + 1 : -1;
    if (!t.startsWith('-')) return i;
    const name = t.startsWith('--') ? t.slice(2).split('=')[0]! : '';
    if (!t.includes('=') && GLOBAL_FLAGS[name] && GLOBAL_FLAGS[name].type !== 'boolean') i++;
  }
  return -1;
}

export interface RunIO {
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  env?: NodeJS.ProcessEnv;
}

/** Run one CLI invocation; resolves with the exit code. Never throws. */
export async function run(argv: readonly string[], io: RunIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? process.env;
  let command: Command | undefined;
  let ctx: Ctx | undefined;
  try {
    const at = commandIndex(argv);
    const rest = at < 0 ? [...argv] : [...argv.slice(0, at), ...argv.slice(at + 1)];
    let word = at < 0 ? undefined : argv[at]!;
    if (word === 'help') {
      // `shoal help [command]`
      const target = rest.find((t) => !t.startsWith('-'));
      if (!target) { stdout.write(generalHelp() + '\n'); return EXIT.OK; }
      word = target;
      rest.splice(rest.indexOf(target), 1, '--help');
    }
    if (word === undefined) {
      const { flags } = parseArgs(rest, GLOBAL_FLAGS);
      if (flags.help) { stdout.write(generalHelp() + '\n'); return EXIT.OK; }
      stderr.write(generalHelp() + '\n');
      return EXIT.USAGE;
    }
    command = ALL_COMMANDS.find((c) => c.name === word);
    if (!command) throw new UsageError(`unknown command '${word}'${suggest(word, ALL_COMMANDS.map((c) => c.name), '')}; commands: ${ALL_COMMANDS.map((c) => c.name).join(', ')}`);
    const { positionals, flags } = parseArgs(rest, { ...GLOBAL_FLAGS, ...command.flags });
    if (flags.help) { stdout.write(commandHelp(command) + '\n'); return EXIT.OK; }
    const [min, max] = command.args;
    if (positionals.length < min) throw new UsageError(`missing argument: shoal ${command.name} ${command.usage}`);
    if (positionals.length > max) throw new UsageError(`unexpected argument '${positionals[max]}': shoal ${command.name} ${command.usage}`);
    const prefix = typeof flags.prefix === 'string' ? flags.prefix : env.SHOAL_PREFIX || DEFAULT_PREFIX;
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) throw new UsageError(`--prefix '${prefix}' is not valid: subject tokens (A-Z a-z 0-9 _ -) joined by dots`);
    const timeoutMs = flags.timeout === undefined ? undefined : intFlag(flags, 'timeout', 0, 1, 3_600_000);
    const natsUrl = typeof flags.nats === 'string' ? flags.nats : env.SHOAL_NATS_URL || 'nats://127.0.0.1:4222';
    ctx = new Ctx(natsUrl, prefix, flags.json === true, timeoutMs, stdout, stderr, cliAuth(env, ROOT));
    return await command.run(ctx, positionals, flags);
  } catch (err) {
    return report(err, stderr, command);
  } finally {
    await ctx?.close();
  }
}

/** One line on stderr and the exit code for it. Stacks only with SHOAL_DEBUG=1. */
export function report(err: unknown, stderr: NodeJS.WritableStream, command?: Command): number {
  const line = (s: string) => stderr.write(s.replace(/\s*\n\s*/g, ' ') + '\n');
  if (err instanceof UsageError) {
    line(`error: ${err.message} (see \`shoal ${command ? command.name + ' ' : ''}--help\`)`);
    return EXIT.USAGE;
  }
  if (err instanceof UnreachableError) {
    line(`error: ${err.code}: ${err.message}`);
    return EXIT.UNREACHABLE;
  }
  if (isNoResponders(err)) {
    const e = err as ShoalError;
    line(`error: ${e.code}: ${e.message}; ${HINT}`);
    return EXIT.UNREACHABLE;
  }
  if (err instanceof ShoalError) {
    line(`error: ${err.code}: ${err.message}`);
    return EXIT.FAILED;
  }
  const e = ShoalError.from(err, ErrorCodes.INTERNAL);
  line(`error: ${e.code}: ${e.message}`);
  if (process.env.SHOAL_DEBUG && err instanceof Error && err.stack) stderr.write(err.stack + '\n');
  return EXIT.FAILED;
}
