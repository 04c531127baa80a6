#!/usr/bin/env bash
# `npm start` = `shoal up`: install what is missing (npm packages, nats-server),
# build, then run a local cluster in the foreground: its own nats-server with
# JetStream (data in .shoal/), one balancer, two pool-nodes with
# config/session-pool.yaml. Ctrl-C stops all of it.
# Arguments go to `shoal up`: npm start -- --nodes 3 --port 4333
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "shoal: building (npx tsc -b)..." >&2
npx tsc -b
exec node bin/shoal.js up "$@"
