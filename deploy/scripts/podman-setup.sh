#!/usr/bin/env bash
# Make a Debian machine able to run the compose test without a Docker engine:
# podman, podman-compose, debootstrap (local base images, no registry needed)
# and prometheus/promtool. Idempotent; quiet when everything is there.
#
# Podman's default OCI runtime (crun) fails on cgroups in some sandboxes (ours
# among them), and its default ulimits cannot be raised there: runc with no
# default ulimits works. Only done when /etc/containers/containers.conf does
# not exist yet, so a machine's own podman setup is left alone.
set -euo pipefail
need=()
for c in podman podman-compose debootstrap promtool runc; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for c in "${need[@]}"; do case "$c" in promtool) pkgs+=(prometheus) ;; runc) pkgs+=(runc) ;; *) pkgs+=("$c") ;; esac; done
  echo "shoal deploy: installing ${pkgs[*]} (Debian)..." >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >&2
  # The package starts a Prometheus where an init system runs; the tests start their own.
  $SUDO pkill -x prometheus 2>/dev/null || true
fi
if [ ! -e /etc/containers/containers.conf ] && [ "$(id -u)" = 0 ]; then
  cat > /etc/containers/containers.conf <<'CONF'
# Written by Shoal's deploy/scripts/podman-setup.sh (see there for why).
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
fi
