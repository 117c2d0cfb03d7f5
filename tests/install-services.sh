#!/usr/bin/env bash
# The servers the tests talk to, for machines that have none, such as CI.
#
#   tests/install-services.sh   install PostgreSQL and OpenSSH's server where missing
#
# Only the programs are needed: the tests start their own PostgreSQL cluster and
# their own sshd (tests/service_fixtures.py), on free ports of 127.0.0.1 with
# throwaway data folders and keys, and stop them at the end. Machines that have
# both programs are left alone, running services included.
set -euo pipefail

say() { echo "install-services: $*" >&2; }

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)

if [ "${#missing[@]}" = 0 ]; then
    exit 0
fi
[ "$(id -u)" = 0 ] || { say "the tests need ${missing[*]}: run apt-get install ${missing[*]} as root (or this script), then again"; exit 1; }

say "installing ${missing[*]}"
# apt's chatter (debconf without apt-utils, needrestart's hook) goes to a log,
# shown only when the install fails.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    say "apt-get failed; its last lines:"
    tail -n 20 "$log" >&2
    exit 1
fi

# The packages may start their default services (the "main" cluster on 5432,
# sshd on 22). The tests never use them, and a fresh machine should not keep
# servers it did not have; a policy-rc.d or a missing init may have kept them
# from starting at all, so failing to stop them is fine.
for package in "${missing[@]}"; do
    case "$package" in
        postgresql)
            for conf in /etc/postgresql/*/main; do
                [ -d "$conf" ] || continue
                version="$(basename "$(dirname "$conf")")"
                pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
            done
            ;;
        openssh-server)
            service ssh stop >/dev/null 2>&1 || true
            ;;
    esac
done
say "installed ${missing[*]}"
