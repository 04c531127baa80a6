export { weaviateDriver, type Conn, type WeaviateDriver } from './driver.js';
export { OPS, OP_NAMES, parseOp } from './ops.js';
export { parseSettings, describeEndpoints, type WeaviateSettings } from './settings.js';
export { classify } from './errors.js';
export { toWire } from './serialize.js';
export {
  aggregateVectorStoreStats, vectorStoreStatsOfNode, nodeStats,
  type VectorStoreStats, type VectorStoreStatsResponse, type ConnectionMetrics, type WeaviateDriverStats,
} from '@shoal/protocol';
