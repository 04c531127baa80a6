/**
 * Protocol version carried as `v` in every message. A peer that receives a
 * message with another major version answers VERSION_MISMATCH instead of
 * guessing at fields, so mixed deployments fail loudly during a rollout.
 */
export const PROTOCOL_VERSION = 1 as const;
