#!/usr/bin/env bash
# `npm test`: install what is missing, build, lint, type-check the tests, then
# unit, integration and e2e suites. Works on a fresh clone of a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOAL_ENSURE_CHROMIUM=1 bash scripts/ensure-deps.sh
npx tsc -b
npx eslint .
npx tsc -p test/tsconfig.json
npx mocha 'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts' 'test/e2e/**/*.test.ts' "$@"
