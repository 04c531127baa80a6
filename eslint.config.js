import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '.shoal/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly', URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', setImmediate: 'readonly', fetch: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    // Type-aware rules for the TypeScript sources: each file is checked by the
    // tsconfig that builds it (test/tsconfig.json also covers bench/).
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: {
        project: ['./shared/*/tsconfig.json', './services/*/tsconfig.json', './test/tsconfig.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // An un-awaited promise is a lost error (or an assertion that never runs): await it, handle it, or `void` it on purpose.
      '@typescript-eslint/no-floating-promises': 'error',
    },
  },
);
