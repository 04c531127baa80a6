#!/usr/bin/env bash
# Install what Shoal needs and is missing: npm packages and the Debian
# nats-server. Idempotent and quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "shoal: installing npm packages..." >&2
  npm ci --no-audit --no-fund --loglevel=error >&2 || npm install --no-audit --no-fund --loglevel=error >&2
fi
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ] && [ -z "${SHOAL_NATS_SERVER:-}" ]; then
  echo "shoal: nats-server not found, installing the Debian package..." >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >&2
fi
# The NATS TLS test makes its certificates with openssl.
if ! command -v openssl >/dev/null 2>&1; then
  echo "shoal: openssl not found (the TLS test needs it), installing the Debian package..." >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >&2
fi
# Headless Chromium for the status page's browser test (test/e2e/status-page.test.ts).
# Only when asked (scripts/test.sh does): `npm start` does not need it.
if [ -n "${SHOAL_ENSURE_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ] && [ -z "${SHOAL_CHROMIUM:-}" ]; then
  echo "shoal: chromium not found, installing the Debian package (for the status page test)..." >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi
