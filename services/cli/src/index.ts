// Library surface of the CLI, for tests and for embedding; the `shoal` binary is dist/main.js.
export { run, report, commandHelp, GLOBAL_FLAGS, ALL_COMMANDS } from './run.js';
export { parseArgs, UsageError, suggest, type FlagSpec, type FlagSpecs, type FlagValues, type Parsed } from './args.js';
export { table, compactLog, ms } from './format.js';
export { fetchStatus, fromBalancer, nodeRow, openNats, serverList, UnreachableError, type ClusterStatus, type NodeRow, type PoolRow } from './cluster.js';
export { EXIT } from './context.js';
export { findExecutable, portFree } from './up.js';
export { addClient, authConfig, cliAuth, defaultCredsDir, ensureCreds, type Credential } from './nats-auth.js';
