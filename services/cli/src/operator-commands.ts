import type { SettingRow } from '@shoal/protocol';
import { hostname, userInfo } from 'node:os';
import { call } from '@shoal/runtime';
import { UsageError } from './args.js';
import { HINT, isNoResponders, UnreachableError } from './cluster.js';
import { EXIT, type Command, type Ctx } from './context.js';
import { paint, table } from './format.js';

/** Who makes an operator change, kept with the setting (`shoal status` shows it). */
export function operatorName(): string {
  let user = process.env.USER ?? '';
  try {
    user = userInfo().username;
  } catch { /* no passwd entry (a container): the variable, or nothing */ }
  return `${user || 'unknown'}@${hostname()}`.slice(0, 128);
}


/** The SETTINGS table of `shoal status`: each runtime setting, its value, where it came from. */
export function printSettings(ctx: Ctx, values: unknown): void {
  if (!Array.isArray(values) || values.length === 0) return;
  const rows = (values as SettingRow[]).map((r) => {
    const set = r.source === 'runtime' ? `${r.by ?? 'unknown'}${typeof r.at === 'number' ? ' at ' + new Date(r.at).toISOString() : ''}` : '';
    return [r.key, r.pool ?? r.nodeId ?? '', r.key === 'acquire_timeout' && typeof r.value === 'number' ? `${r.value}ms` : String(r.value), r.source, set];
  });
  ctx.out('');
  ctx.out(table(['SETTING', 'FOR', 'VALUE', 'SOURCE', 'SET BY'], rows, new Set()));
  ctx.out(paint(ctx.stdout, 'gray', '`shoal settings reset [key]` puts runtime settings back to the config'));
}

async function request<T>(ctx: Ctx, subject: string, body: Record<string, unknown>, nobody: string): Promise<T> {
  try {
    return await call<T>(await ctx.nats(), subject, body, ctx.timeout(5000));
  } catch (err) {
    if (isNoResponders(err)) throw new UnreachableError(nobody);
    throw err;
  }
}

const settings: Command = {
  name: 'settings',
  usage: 'reset [key]',
  summary: 'put runtime settings (strategy, weight.<node>) back to the config',
  details: 'Without a key, every runtime setting is removed from the settings KV bucket; every balancer then uses its config again. `shoal status` lists them.',
  flags: {},
  args: [1, 2],
  async run(ctx, [verb, key]) {
    if (verb !== 'reset') throw new UsageError(`settings takes reset, got '${verb}'`);
    if (key !== undefined && !/^(strategy|weight\.[A-Za-z0-9_-]{1,64})$/.test(key)) throw new UsageError(`key must be strategy or weight.<node>, got '${key}'`);
    const reply = await request<{ reset: string[]; strategy?: string }>(ctx, ctx.s.adminSettingsReset, { ...(key ? { key } : {}), by: operatorName() },
      `no balancer answers on ${ctx.s.adminSettingsReset}; ${HINT}`);
    if (ctx.json) ctx.emit(reply);
    else if (reply.reset.length === 0) ctx.out(key ? `${key} was not set at runtime` : 'no runtime settings were set');
    else ctx.out(`back to the config: ${reply.reset.join(', ')}`);
    return EXIT.OK;
  },
};

const undrain: Command = {
  name: 'undrain',
  usage: '<node>',
  summary: 'take a node out of draining (its pools start again if the drain had finished)',
  details: 'Within the drain\'s grace period the node keeps its leases and resources; after the drain destroyed them, its pools warm up again. Refused while the drain is destroying resources (retry) and for a node draining to exit.',
  flags: {},
  args: [1, 1],
  async run(ctx, [nodeArg]) {
    const nodeId = nodeArg!;
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) throw new UsageError(`node id '${nodeId}' is not valid: 1-64 of A-Z a-z 0-9 _ -`);
    const subject = ctx.s.nodeUndrain(nodeId);
    const reply = await request<{ already?: boolean; pools?: Record<string, string> }>(ctx, subject, {}, `no node ${nodeId} answers on ${subject} (see \`shoal status\` for the node ids)`);
    if (ctx.json) ctx.emit({ nodeId, ...reply });
    else ctx.out(reply.already ? `${nodeId} was not draining` : `${nodeId} takes work again (${Object.entries(reply.pools ?? {}).map(([p, how]) => `${p}: ${how}`).join(', ')})`);
    return EXIT.OK;
  },
};

export const OPERATOR_COMMANDS: Command[] = [settings, undrain];
