#!/usr/bin/env bash
# Prepare a machine like ours (Debian bookworm, root, no Docker daemon, no image registry)
# to build and run OCI containers with podman, and serve podman's Docker-compatible API.
#
#   sudo bash scripts/prepare-containers.sh        # idempotent; a few seconds when done
#   export DOCKER_HOST=unix:///run/crispops-podman.sock
#   crispops images build && crispops run --runner docker
#
# What it does, each step only when missing:
#   1. apt-get install podman buildah runc debootstrap (runc: crun fails here with
#      "cgroups in hybrid mode not supported");
#   2. /etc/containers/containers.conf: lowered ulimits (raising them is not permitted in
#      a container here), runc, cgroupfs, host network (no CNI bridge is set up);
#   3. the base image localhost/debian-py:bookworm, made with debootstrap from Debian's
#      packages (no image registry is reachable); its rootfs tarball is cached;
#   4. `podman system service` on a unix socket, in the background.
# The last line it prints is the DOCKER_HOST to export.
set -euo pipefail

SOCK=${CRISPOPS_PODMAN_SOCK:-/run/crispops-podman.sock}
BASE_IMAGE=${CRISPOPS_BASE_IMAGE:-localhost/debian-py:bookworm}
CACHE=${CRISPOPS_CACHE:-/var/cache/crispops}
SUITE=bookworm
CONF=/etc/containers/containers.conf
export DEBIAN_FRONTEND=noninteractive

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'prepare-containers: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and writes /etc/containers)"
command -v apt-get >/dev/null || die "needs a Debian-like machine (apt-get not found)"

# 1. packages ---------------------------------------------------------------------------
need=()
for pkg in podman buildah runc debootstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  say "installing ${need[*]}"
  apt-get update -qq
  # runc first in the same transaction, so podman's "crun | runc" takes runc.
  apt-get install -y -qq --no-install-recommends runc "${need[@]}" >/dev/null
fi

# 2. containers.conf --------------------------------------------------------------------
mkdir -p /etc/containers
conf=$(cat <<'EOF'
# Written by crispops scripts/prepare-containers.sh.
[containers]
# Raising resource limits is not permitted inside a container here; lowering works.
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
# No CNI bridge on these machines: containers share the host's network.
netns = "host"

[engine]
# crun fails here ("cgroups in hybrid mode not supported"); runc works.
runtime = "runc"
# No systemd or journald.
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)
if [[ ! -f $CONF ]] || [[ "$(cat "$CONF")" != "$conf" ]]; then
  say "writing $CONF"
  [[ -f $CONF ]] && cp "$CONF" "$CONF.bak"
  printf '%s\n' "$conf" >"$CONF"
fi
# A policy that accepts local images (the package ships one; a minimal machine may not).
if [[ ! -f /etc/containers/policy.json ]]; then
  printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >/etc/containers/policy.json
fi

# 3. the base image ---------------------------------------------------------------------
if ! podman image exists "$BASE_IMAGE"; then
  tarball=$CACHE/debian-py-$SUITE.tar
  if [[ ! -s $tarball ]]; then
    mirror=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' \
      /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "debootstrap $SUITE from $mirror (about 40 s)"
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$SUITE" "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $CACHE/debootstrap.log"
    # Leave no apt lists or caches in the image.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
      "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  say "importing $BASE_IMAGE"
  podman import --quiet \
    --change 'CMD ["/bin/bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    "$tarball" "$BASE_IMAGE" >/dev/null
fi

# 4. the Docker-compatible API ----------------------------------------------------------
api_ok() { curl -sf --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }
if ! api_ok; then
  say "starting podman system service on $SOCK"
  rm -f "$SOCK"
  log=${CRISPOPS_PODMAN_LOG:-/var/log/crispops-podman.log}
  setsid nohup podman system service --time=0 "unix://$SOCK" >"$log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do
    api_ok && break
    sleep 0.2
  done
  api_ok || die "podman system service did not answer on $SOCK; see $log"
fi

# A smoke test of the runtime: catches a broken runc or ulimit setting early.
podman run --rm --network=host "$BASE_IMAGE" python3 -c 'pass' \
  || die "podman cannot run $BASE_IMAGE; see 'podman info'"

echo "DOCKER_HOST=unix://$SOCK"
