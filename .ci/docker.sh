#!/usr/bin/env bash
# Provides a Docker engine and the test image for the docker runtime, idempotently.
#
# 1. Installs Debian's docker.io (and busybox-static) when missing; runs
#    `apt-get update` at most once, and only when something must be installed.
# 2. Starts dockerd in the background when `docker info` fails, logging to
#    ${DOCKERD_LOG:-/tmp/dockerd.log}, and retries twice if it does not come
#    up (after a dockerd was killed, its containerd can take a while to go).
#    Extra daemon flags go in DOCKERD_FLAGS; the defaults (overlay2, iptables)
#    work on these machines, and DOCKERD_FLAGS="--iptables=false
#    --storage-driver=vfs" is the fallback for sandboxes without overlayfs or
#    iptables. The flags are never switched silently: images stored under one
#    storage driver are invisible under another.
# 3. Builds `corral-test-busybox:latest` without any registry: a root
#    filesystem holding Debian's static busybox, its applet symlinks and a
#    `memhog` script, fed to `docker import`. Nothing is ever pulled.
#    Set CORRAL_REBUILD_IMAGE=1 to rebuild an existing image.
#
# Must run as root (dockerd and apt-get need it).
#
#   .ci/docker.sh && .venv/bin/pytest -m docker tests/test_docker_runtime.py
set -euo pipefail

image="${CORRAL_TEST_IMAGE:-corral-test-busybox:latest}"
dockerd_log="${DOCKERD_LOG:-/tmp/dockerd.log}"
pidfile=/var/run/docker.pid
wait_seconds="${DOCKERD_WAIT_SECONDS:-60}"
apt_updated=0

log() { echo "docker.sh: $*" >&2; }

apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update >&2
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

is_live() {
    # True when $1 is a running process, not a zombie waiting to be reaped.
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

live_dockerd() {
    # Prints the pid in dockerd's pidfile if it names a live dockerd; removes
    # a stale pidfile, which would stop a new dockerd from starting.
    [ -f "$pidfile" ] || return 1
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && is_live "$pid" && grep -qx dockerd "/proc/$pid/comm" 2>/dev/null; then
        echo "$pid"
        return 0
    fi
    log "removing stale $pidfile"
    rm -f "$pidfile"
    return 1
}

wait_for_engine() {
    # $1: pid of the dockerd we started; fails early if it died.
    local deadline=$((SECONDS + wait_seconds))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if docker info >/dev/null 2>&1; then
            return 0
        fi
        if ! is_live "$1"; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

start_dockerd() {
    # Starts dockerd with DOCKERD_FLAGS; waits until it answers.
    log "starting dockerd ${DOCKERD_FLAGS:-} (log: $dockerd_log)"
    live_dockerd >/dev/null || true
    # shellcheck disable=SC2086  # DOCKERD_FLAGS is a list of words on purpose.
    nohup dockerd ${DOCKERD_FLAGS:-} >>"$dockerd_log" 2>&1 </dev/null &
    local pid=$!
    if wait_for_engine "$pid"; then
        return 0
    fi
    log "dockerd did not come up; last lines of $dockerd_log:"
    tail -n 20 "$dockerd_log" >&2 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}

build_image() {
    local rootfs
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' RETURN

    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/dev"
    chmod 1777 "$rootfs/tmp"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
    done
    echo "root:x:0:0:root:/:/bin/sh" >"$rootfs/etc/passwd"
    echo "root:x:0:" >"$rootfs/etc/group"

    # busybox has no allocator applet: a command substitution makes the shell
    # itself (the container's pid 1) buffer the whole output, 256 MiB by
    # default, which a 32 MiB memory limit turns into an OOM kill.
    cat >"$rootfs/bin/memhog" <<'EOF'
#!/bin/sh
# Usage: memhog [BYTES]; grows this shell's memory by BYTES (default 256 MiB).
x=$(head -c "${1:-268435456}" /dev/zero | tr '\0' x)
echo "memhog survived: ${#x} bytes"
EOF
    chmod 755 "$rootfs/bin/memhog"

    tar -C "$rootfs" -c . | docker import \
        -c 'ENV PATH=/bin' -c 'CMD ["sh"]' \
        -m "corral test image: static busybox and memhog" - "$image" >&2
    log "built $image"
}

# 1. Packages.
if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
fi
if ! is_installed busybox-static; then
    apt_install busybox-static
fi

# 2. The engine.
if ! docker info >/dev/null 2>&1 && pid="$(live_dockerd)"; then
    # A dockerd is starting (or stopping): give it its chance first.
    log "waiting for dockerd $pid"
    wait_for_engine "$pid" || true
fi
if ! docker info >/dev/null 2>&1; then
    start_dockerd || start_dockerd || start_dockerd || {
        log "cannot start dockerd; see $dockerd_log"
        exit 1
    }
fi
log "engine ready: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

# 3. The test image, built locally.
if [ "${CORRAL_REBUILD_IMAGE:-0}" = 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
    build_image
else
    log "$image already present"
fi
