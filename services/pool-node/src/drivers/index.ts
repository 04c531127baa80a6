import type { DriverFactory } from '../driver.js';
import { syntheticDriver } from './synthetic.js';
import { claudeCliDriver } from './claude-cli/index.js';
import { weaviateDriver } from './weaviate/index.js';

/** Driver kinds by the name a pool's `driver:` key uses. */
export const drivers: Record<string, DriverFactory> = {
  synthetic: syntheticDriver as DriverFactory,
  'claude-cli': claudeCliDriver as DriverFactory,
  weaviate: weaviateDriver as DriverFactory,
};

export function driverFor(kind: string): DriverFactory {
  const f = drivers[kind];
  if (!f) throw new Error(`driver ${kind} is not available in this build (available: ${Object.keys(drivers).join(', ')})`);
  return f;
}
