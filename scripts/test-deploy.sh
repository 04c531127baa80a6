#!/usr/bin/env bash
# `npm run test:deploy`: the deployment, for real. Installs what is missing
# (podman, podman-compose, runc, debootstrap, prometheus), builds local base
# images when no registry is reachable, builds Shoal's image with the
# machine's CA for npm behind a TLS-intercepting proxy (a build secret, not
# kept in the image), then runs test/deploy: promtool on the alert rules, a
# real Prometheus scraping a `shoal up` cluster, the compose cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
bash deploy/scripts/podman-setup.sh
npx tsc -b
bash deploy/scripts/base-images.sh
image=${SHOAL_TEST_IMAGE:-localhost/shoal:test}
secret=()
ca=${NODE_EXTRA_CA_CERTS:-}
[ -n "$ca" ] && [ -s "$ca" ] && secret=(--secret "id=npm_ca,src=$ca")
echo "shoal test:deploy: building $image..." >&2
podman build -q --format docker "${secret[@]}" --build-arg NODE_IMAGE=localhost/shoal-node:20 -t "$image" . >/dev/null
export SHOAL_TEST_IMAGE=$image
npx mocha --timeout 600000 'test/deploy/**/*.test.ts' "$@"
