// @ts-check
// Every line the Claude stand-in prints, built here and typed against the
// published stream-json types of @anthropic-ai/claude-agent-sdk (a dev
// dependency, types only): `tsc -p test/tsconfig.json` checks each builder's
// object against the SDK's type, so a field the real CLI's types require (or
// forbid) cannot drift unnoticed. test/unit/claude-stand-in-fidelity.test.ts
// also checks the emitted lines at run time.
import { randomUUID } from 'node:crypto';

/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKMessage} SDKMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKSystemMessage} SDKSystemMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKStatusMessage} SDKStatusMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKPartialAssistantMessage} SDKPartialAssistantMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKAssistantMessage} SDKAssistantMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKResultSuccess} SDKResultSuccess */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKResultError} SDKResultError */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKUserMessage} SDKUserMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKAPIRetryMessage} SDKAPIRetryMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKRateLimitEvent} SDKRateLimitEvent */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKConversationResetMessage} SDKConversationResetMessage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKControlRequest} SDKControlRequest */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKControlResponse} SDKControlResponse */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').SDKControlInitializeResponse} SDKControlInitializeResponse */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').NonNullableUsage} NonNullableUsage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').ModelUsage} ModelUsage */
/** @typedef {import('@anthropic-ai/claude-agent-sdk').PermissionMode} PermissionMode */
/** @typedef {SDKPartialAssistantMessage['event']} StreamEvent */
/** @typedef {SDKAssistantMessage['message']} BetaMessage */

/**
 * Token counts as the CLI reports them (the API's usage block).
 * @param {number} input
 * @param {number} output
 * @returns {NonNullableUsage}
 */
export function usage(input, output) {
  return {
    input_tokens: input, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: output,
    server_tool_use: { web_search_requests: 0, web_fetch_requests: 0 }, service_tier: 'standard',
    cache_creation: { ephemeral_1h_input_tokens: 0, ephemeral_5m_input_tokens: 0 },
    inference_geo: 'not_available', iterations: [], speed: 'standard', fallback_credit: null, output_tokens_details: { thinking_tokens: 0 },
  };
}

/**
 * @param {{ cwd: string, sessionId: string, tools: string[], model: string, permissionMode: PermissionMode, apiKeySource: 'ANTHROPIC_API_KEY' | 'none', version: string }} o
 * @returns {SDKSystemMessage}
 */
export function init(o) {
  return {
    type: 'system', subtype: 'init', cwd: o.cwd, session_id: o.sessionId, tools: o.tools, mcp_servers: [], model: o.model, permissionMode: o.permissionMode,
    slash_commands: ['compact', 'context', 'cost', 'init', 'review', 'clear'], apiKeySource: o.apiKeySource,
    claude_code_version: o.version, output_style: 'default', agents: ['general-purpose', 'Explore', 'Plan'], skills: [], plugins: [],
    uuid: randomUUID(), fast_mode_state: 'off',
  };
}

/**
 * @param {string} sessionId
 * @returns {SDKStatusMessage}
 */
export function status(sessionId) {
  return { type: 'system', subtype: 'status', status: 'requesting', uuid: randomUUID(), session_id: sessionId };
}

/**
 * One partial-message line (with --include-partial-messages).
 * @param {string} sessionId
 * @param {StreamEvent} event
 * @returns {SDKPartialAssistantMessage}
 */
export function streamEvent(sessionId, event) {
  return { type: 'stream_event', event, session_id: sessionId, parent_tool_use_id: null, uuid: randomUUID() };
}

/**
 * The events of one text reply, in the API's order.
 * @param {{ id: string, model: string, inputTokens: number }} m
 * @returns {StreamEvent}
 */
export function messageStart(m) {
  return { type: 'message_start', message: assistantMessage({ id: m.id, model: m.model, text: undefined, usage: usage(m.inputTokens, 1), stopReason: null }) };
}
/** @returns {StreamEvent} */
export function textBlockStart() {
  return { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '', citations: null } };
}
/**
 * @param {string} text
 * @returns {StreamEvent}
 */
export function textDelta(text) {
  return { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } };
}
/** @returns {StreamEvent} */
export function blockStop() {
  return { type: 'content_block_stop', index: 0 };
}
/**
 * @param {number} outputTokens
 * @returns {StreamEvent}
 */
export function messageDelta(outputTokens) {
  return {
    type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null, container: null, stop_details: null },
    usage: { output_tokens: outputTokens, input_tokens: null, cache_creation_input_tokens: null, cache_read_input_tokens: null, server_tool_use: null, iterations: null, fallback_credit: null, output_tokens_details: null },
    context_management: null,
  };
}
/** @returns {StreamEvent} */
export function messageStop() {
  return { type: 'message_stop' };
}

/**
 * The API message inside an assistant line (and a message_start event).
 * @param {{ id: string, model: string, text: string | undefined, usage: NonNullableUsage, stopReason: BetaMessage['stop_reason'], stopSequence?: string | null }} m
 * @returns {BetaMessage}
 */
function assistantMessage(m) {
  return {
    id: m.id, type: 'message', role: 'assistant', model: m.model,
    content: m.text === undefined ? [] : [{ type: 'text', text: m.text, citations: null }],
    stop_reason: m.stopReason, stop_sequence: m.stopSequence ?? null, stop_details: null, usage: m.usage, container: null, context_management: null, diagnostics: null,
  };
}

/**
 * @param {{ sessionId: string, id: string, model: string, text: string, usage: NonNullableUsage, stopReason: BetaMessage['stop_reason'], stopSequence?: string | null }} o
 * @returns {SDKAssistantMessage}
 */
export function assistant(o) {
  return { type: 'assistant', message: assistantMessage(o), parent_tool_use_id: null, session_id: o.sessionId, uuid: randomUUID() };
}

/**
 * One model's line in a result's modelUsage.
 * @param {number} inTok
 * @param {number} outTok
 * @param {number} cost
 * @returns {ModelUsage}
 */
export function modelUsage(inTok, outTok, cost) {
  return { inputTokens: inTok, outputTokens: outTok, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, webSearchRequests: 0, costUSD: cost, contextWindow: 200000, maxOutputTokens: 32000 };
}

/**
 * @param {{ sessionId: string, durationMs: number, durationApiMs: number, isError: boolean, numTurns: number, result: string, stopReason: string | null, costUsd: number, usage: NonNullableUsage, modelUsage: Record<string, ModelUsage> }} o
 * @returns {SDKResultSuccess}
 */
export function resultSuccess(o) {
  return {
    type: 'result', subtype: 'success', is_error: o.isError, duration_ms: o.durationMs, duration_api_ms: o.durationApiMs, num_turns: o.numTurns, result: o.result,
    stop_reason: o.stopReason, session_id: o.sessionId, total_cost_usd: o.costUsd, usage: o.usage, modelUsage: o.modelUsage,
    permission_denials: [], fast_mode_state: 'off', uuid: randomUUID(),
  };
}

/**
 * @param {{ sessionId: string, durationMs: number, numTurns: number, errors: string[], terminalReason?: import('@anthropic-ai/claude-agent-sdk').TerminalReason }} o
 * @returns {SDKResultError}
 */
export function resultError(o) {
  return {
    type: 'result', subtype: 'error_during_execution', duration_ms: o.durationMs, duration_api_ms: 0, is_error: true, num_turns: o.numTurns, stop_reason: null,
    session_id: o.sessionId, total_cost_usd: 0, usage: usage(0, 0), modelUsage: {}, permission_denials: [],
    ...(o.terminalReason ? { terminal_reason: o.terminalReason } : {}), fast_mode_state: 'off', uuid: randomUUID(), errors: o.errors,
  };
}

/**
 * The user line the CLI prints when a turn is interrupted.
 * @param {string} sessionId
 * @returns {SDKUserMessage}
 */
export function interruptedByUser(sessionId) {
  return { type: 'user', message: { role: 'user', content: [{ type: 'text', text: '[Request interrupted by user]' }] }, parent_tool_use_id: null, session_id: sessionId, uuid: randomUUID(), timestamp: new Date().toISOString() };
}

/**
 * What the CLI prints while it cannot reach the API.
 * @param {string} sessionId
 * @param {number} attempt
 * @returns {SDKAPIRetryMessage}
 */
export function apiRetry(sessionId, attempt) {
  return { type: 'system', subtype: 'api_retry', attempt, max_retries: 10, retry_delay_ms: 200 * attempt, error_status: null, error: 'unknown', session_id: sessionId, uuid: randomUUID() };
}

/**
 * @param {string} sessionId
 * @returns {SDKRateLimitEvent}
 */
export function rateLimit(sessionId) {
  return { type: 'rate_limit_event', rate_limit_info: { status: 'allowed', resetsAt: Math.floor(Date.now() / 1000) + 3600, rateLimitType: 'five_hour' }, uuid: randomUUID(), session_id: sessionId };
}

/**
 * @param {string} newSessionId
 * @returns {SDKConversationResetMessage}
 */
export function conversationReset(newSessionId) {
  const id = /** @type {SDKConversationResetMessage['new_conversation_id']} */ (newSessionId);
  return { type: 'conversation_reset', new_conversation_id: id, session_id: newSessionId, uuid: randomUUID(), trigger: 'clear' };
}

/**
 * A permission request to the host (the driver answers it on stdin).
 * @param {string} requestId
 * @param {string} toolName
 * @param {Record<string, unknown>} input
 * @returns {SDKControlRequest}
 */
export function canUseTool(requestId, toolName, input) {
  return { type: 'control_request', request_id: requestId, request: { subtype: 'can_use_tool', tool_name: toolName, input, permission_suggestions: [], tool_use_id: `toolu_01${randomUUID().replace(/-/g, '').slice(0, 22)}` } };
}

/**
 * @param {string} requestId
 * @param {Record<string, unknown>} [response]
 * @returns {SDKControlResponse}
 */
export function controlSuccess(requestId, response) {
  return { type: 'control_response', response: response === undefined ? { subtype: 'success', request_id: requestId } : { subtype: 'success', request_id: requestId, response } };
}

/**
 * @param {string} requestId
 * @param {string} error
 * @returns {SDKControlResponse}
 */
export function controlError(requestId, error) {
  return { type: 'control_response', response: { subtype: 'error', request_id: requestId, error } };
}

/**
 * The answer to `initialize`. (The CLI 2.1.197 recorded also sends its `pid`, which the published type
 * does not list: added beside the typed part.)
 * @param {{ model: string, apiKeySource: 'ANTHROPIC_API_KEY' | 'none', pid: number }} o
 * @returns {SDKControlInitializeResponse & { pid: number }}
 */
export function initializeResponse(o) {
  return { ...initializeTyped(o), pid: o.pid };
}

/**
 * @param {{ model: string, apiKeySource: 'ANTHROPIC_API_KEY' | 'none' }} o
 * @returns {SDKControlInitializeResponse}
 */
function initializeTyped(o) {
  return {
    commands: [{ name: 'compact', description: 'Clear conversation history but keep a summary in context', argumentHint: '<optional custom summarization instructions>' }, { name: 'review', description: 'Review a pull request', argumentHint: '' }],
    agents: [{ name: 'general-purpose', description: 'General-purpose agent' }],
    output_style: 'default', available_output_styles: ['default', 'Explanatory', 'Learning'],
    models: [{ value: 'default', displayName: 'Default (recommended)', description: o.model }],
    account: { tokenSource: 'none', apiKeySource: o.apiKeySource, apiProvider: 'firstParty' },
  };
}
