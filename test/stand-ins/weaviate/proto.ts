/**
 * The gRPC definitions the stand-in serves are the ones weaviate-client ships
 * (ts-proto output under dist/node/esm/proto): the very messages the client
 * encodes, so the stand-in cannot drift from its wire format. The package's
 * `exports` map hides them from bare imports, so they are loaded by file path.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

export type { SearchRequest, SearchReply, SearchResult, MetadataResult } from '../../../node_modules/weaviate-client/dist/node/esm/proto/v1/search_get.js';
export type { BatchObjectsRequest, BatchObjectsReply, BatchObject } from '../../../node_modules/weaviate-client/dist/node/esm/proto/v1/batch.js';
export type { BatchDeleteRequest, BatchDeleteReply } from '../../../node_modules/weaviate-client/dist/node/esm/proto/v1/batch_delete.js';
export type { AggregateRequest, AggregateReply } from '../../../node_modules/weaviate-client/dist/node/esm/proto/v1/aggregate.js';
export type { Properties, Value } from '../../../node_modules/weaviate-client/dist/node/esm/proto/v1/properties.js';
export type { Vectors, ObjectPropertiesValue } from '../../../node_modules/weaviate-client/dist/node/esm/proto/v1/base.js';
import type * as WeaviateProto from '../../../node_modules/weaviate-client/dist/node/esm/proto/v1/weaviate.js';
import type * as HealthProto from '../../../node_modules/weaviate-client/dist/node/esm/proto/google/health/v1/health.js';

// dist/node/cjs/index.js → dist/node/esm
const esm = join(dirname(dirname(createRequire(import.meta.url).resolve('weaviate-client'))), 'esm');
const load = <T>(rel: string) => import(pathToFileURL(join(esm, rel)).href) as Promise<T>;

const weaviateProto = await load<typeof WeaviateProto>('proto/v1/weaviate.js');
const healthProto = await load<typeof HealthProto>('proto/google/health/v1/health.js');

export const WeaviateDefinition = weaviateProto.WeaviateDefinition;
export const HealthDefinition = healthProto.HealthDefinition;
export const SERVING = healthProto.HealthCheckResponse_ServingStatus.SERVING;
