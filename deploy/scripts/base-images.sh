#!/usr/bin/env bash
# Local stand-ins for the official images, for machines that reach no image
# registry (only Debian's mirror and npm): a Debian bookworm base made by
# debootstrap, a Node image laid out like the official `node` image (the
# machine's own node and npm, user `node` uid 1000), and a NATS image with
# Debian's nats-server. Each is built once and kept; `--force` rebuilds.
#
#   localhost/shoal-debian:bookworm   debootstrap --variant=minbase
#   localhost/shoal-node:20           + /usr/local/bin/node, npm, npx
#   localhost/shoal-nats:2            + nats-server
set -euo pipefail
force=0; [ "${1:-}" = "--force" ] && force=1
have() { [ $force = 0 ] && podman image exists "$1"; }
work=$(mktemp -d /var/tmp/shoal-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! have localhost/shoal-debian:bookworm; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "shoal images: debootstrap bookworm from $mirror (~1 min)..." >&2
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - localhost/shoal-debian:bookworm >/dev/null
  rm -rf "$work/rootfs"
fi

if ! have localhost/shoal-node:20; then
  echo "shoal images: node $(node --version) image..." >&2
  mkdir -p "$work/node"
  cp "$(command -v node)" "$work/node/node"
  cp -a "$(dirname "$(readlink -f "$(command -v npm)")")/.." "$work/node/npm"
  cat > "$work/node/Containerfile" <<'CF'
FROM localhost/shoal-debian:bookworm
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version && npm --version
CMD ["node"]
CF
  podman build -q -t localhost/shoal-node:20 "$work/node" >/dev/null
fi

if ! have localhost/shoal-nats:2; then
  echo "shoal images: nats-server image..." >&2
  mkdir -p "$work/nats"
  ns=$(command -v nats-server || echo /usr/sbin/nats-server)
  cp "$ns" "$work/nats/nats-server"
  cat > "$work/nats/Containerfile" <<'CF'
FROM localhost/shoal-debian:bookworm
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-js", "-m", "8222"]
CF
  podman build -q -t localhost/shoal-nats:2 "$work/nats" >/dev/null
fi
