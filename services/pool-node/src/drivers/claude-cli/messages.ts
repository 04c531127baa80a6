import type { SDKAPIRetryMessage, SDKRateLimitEvent, SDKResultMessage } from '@anthropic-ai/claude-agent-sdk';
import type { CliMessage } from './lines.js';

/**
 * The CLI's stdout lines the driver acts on, typed by the shapes Anthropic
 * publishes in `@anthropic-ai/claude-agent-sdk` (`sdk.d.ts`, a dev
 * dependency used for its types only). The guards check only what the
 * driver reads; a newer CLI's extra fields pass through untouched.
 */
export type ResultLine = CliMessage & Pick<SDKResultMessage, 'type' | 'subtype' | 'is_error' | 'total_cost_usd' | 'usage' | 'session_id'>;
export type ApiRetryLine = CliMessage & SDKAPIRetryMessage;
export type RateLimitLine = CliMessage & SDKRateLimitEvent;

export const isResult = (m: CliMessage): m is ResultLine => m.type === 'result';
export const isApiRetry = (m: CliMessage): m is ApiRetryLine => m.type === 'system' && m.subtype === 'api_retry';
export const isRateLimit = (m: CliMessage): m is RateLimitLine =>
  m.type === 'rate_limit_event' && typeof m.rate_limit_info === 'object' && m.rate_limit_info !== null;

/**
 * `total_cost_usd` is cumulative over a process's conversation (sdk.d.ts:
 * "each result carries the running total so far … a mid-session /clear
 * resets the running total"): a turn's own cost is the difference to the
 * previous result's total. A total below that means a reset we did not see:
 * the whole total is this conversation's.
 */
export function turnCost(result: ResultLine, previousTotal: number): { cost: number; total: number } {
  const total = typeof result.total_cost_usd === 'number' && Number.isFinite(result.total_cost_usd) && result.total_cost_usd > 0 ? result.total_cost_usd : 0;
  return { cost: total >= previousTotal ? total - previousTotal : total, total };
}
