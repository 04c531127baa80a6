export { claudeCliDriver } from './driver.js';
export { parseOptions, buildArgs, buildEnv, resolveCommand, DEFAULT_ENV_ALLOW, type ClaudeOptions } from './options.js';
export { LineReader, parseLine, Tail, usageOf, type CliMessage } from './lines.js';
export { ClaudeSession, type SessionState } from './session.js';
export { parseVmRss } from './process.js';
