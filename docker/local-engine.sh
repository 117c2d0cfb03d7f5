#!/usr/bin/env bash
# A Docker engine and a base image for machines that have neither, such as CI.
#
#   docker/local-engine.sh run CMD...   start an engine if none answers, make the
#                                       base image if missing, run CMD, then stop
#                                       the engine again if this script started it
#   docker/local-engine.sh start        start only (prints how to stop it)
#   docker/local-engine.sh base-image   make $BASE_IMAGE only
#   docker/local-engine.sh stop         stop an engine this script started
#
# Machines that already run Docker are left alone: the engine is only checked.
# The engine runs without the default bridge network (no iptables, no private
# 172.x addresses); `fab` runs builds and containers on the host's network.
# No registry is needed: the base image is Debian bookworm made by debootstrap,
# which is what the tests build the trainer image on (TEST_BASE_IMAGE).
set -euo pipefail

BASE_IMAGE="${TEST_BASE_IMAGE:-local/python-base:bookworm}"
STATE_DIR="${LOCAL_ENGINE_STATE:-/tmp/trainer-local-engine}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
SOCKET=/var/run/docker.sock

say() { echo "local-engine: $*" >&2; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

apt_install() {
    [ "$(id -u)" = 0 ] || { say "cannot install $* without root; install it and run again"; exit 1; }
    say "installing $*"
    # apt's chatter (debconf without apt-utils, needrestart's hook) goes to a log,
    # shown only when the install fails, as in tests/install-services.sh.
    mkdir -p "$STATE_DIR"
    local log="$STATE_DIR/apt.log"
    if ! { DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq "$@"; } >"$log" 2>&1; then
        say "apt-get failed; its last lines:"
        tail -n 20 "$log" >&2
        exit 1
    fi
}

start_engine() {
    if engine_answers; then
        say "using the running Docker engine ($(docker version --format '{{.Server.Version}}'))"
        return
    fi
    command -v dockerd >/dev/null || apt_install docker.io
    [ "$(id -u)" = 0 ] || { say "no Docker engine answers and starting one needs root: start Docker, then run again"; exit 1; }
    mkdir -p "$STATE_DIR"
    say "starting dockerd (log: $LOG_FILE)"
    dockerd --bridge=none --iptables=false --ip-masq=false >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 60); do
        engine_answers && { say "dockerd is up"; return; }
        kill -0 "$(cat "$PID_FILE")" 2>/dev/null || break
        sleep 0.5
    done
    say "dockerd did not start; the last lines of $LOG_FILE:"
    tail -n 20 "$LOG_FILE" >&2
    exit 1
}

stop_engine() {
    [ -f "$PID_FILE" ] || return 0
    local pid
    pid="$(cat "$PID_FILE")"
    rm -f "$PID_FILE"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || { say "dockerd stopped"; return; }; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
}

make_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    command -v debootstrap >/dev/null || apt_install debootstrap
    local rootfs
    rootfs="$(mktemp -d)"
    say "making $BASE_IMAGE with debootstrap (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" >"$STATE_DIR/debootstrap.log" 2>&1 \
        || { tail -n 20 "$STATE_DIR/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
    tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "made $BASE_IMAGE"
}

case "${1:-}" in
    start)
        start_engine
        [ -f "$PID_FILE" ] && say "stop it with: $0 stop"
        ;;
    stop) stop_engine ;;
    base-image) mkdir -p "$STATE_DIR"; make_base_image ;;
    run)
        shift
        mkdir -p "$STATE_DIR"
        started_here=false
        engine_answers || started_here=true
        start_engine
        if $started_here; then trap stop_engine EXIT; fi
        make_base_image
        "$@"
        ;;
    *)
        sed -n '2,15p' "$0" >&2
        exit 2
        ;;
esac
