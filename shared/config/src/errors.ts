/**
 * A bad configuration value. The message names the key as written in YAML
 * (`pools.claude.max_size`), the value as given and where it came from
 * (`file /etc/shoal.yaml`, `env AICLI_SESSION_POOL_MIN_SIZE`, `default`,
 * `overrides`), so an operator can fix it without reading code.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';

  constructor(
    readonly key: string,
    readonly value: unknown,
    readonly source: string,
    readonly why: string,
  ) {
    super(`config: ${key} = ${show(value)} (from ${source}): ${why}`);
  }
}

function show(v: unknown): string {
  return typeof v === 'string' || (typeof v === 'object' && v !== null) ? JSON.stringify(v) : String(v);
}
