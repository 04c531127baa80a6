import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '@shoal/config';

/** A YAML file under test/fixtures/config. */
export const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/config/${name}`, import.meta.url));
/** The shipped example, config/session-pool.yaml. */
export const EXAMPLE = fileURLToPath(new URL('../../config/session-pool.yaml', import.meta.url));

/** Run `fn`, expecting it to throw a ConfigError; return it. */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  return expect.fail('expected a ConfigError');
}
