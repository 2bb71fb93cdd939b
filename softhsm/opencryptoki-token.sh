#!/usr/bin/env bash
# Runs openCryptoki's software token (swtok, slot 3) for tests: its own pkcsslotd, a fresh token
# with random PINs, and a wipe afterwards.
#
#   softhsm/opencryptoki-token.sh start DIR LABEL   # prints the library path; PIN in DIR/pins/LABEL.pin
#   softhsm/opencryptoki-token.sh stop
#   softhsm/opencryptoki-token.sh daemon-stop | daemon-start   # the token is kept (failover tests)
#
# openCryptoki 3.8.1 compiles its paths in (/etc/opencryptoki/opencryptoki.conf, /var/lib/opencryptoki,
# /var/run/pkcsslotd.socket, /dev/shm/var.lib.opencryptoki.swtok): there is one swtok per machine
# and no private data directory. So the token is wiped back to its factory state before and after
# each use, and only a token these tests made (a marker file) or a factory-fresh one is ever wiped.
# The caller serialises users (test/support/opencryptoki.ts holds a lock). Needs root, the
# `opencryptoki` package and a build (dist/src/cli/init-token.js).
#
# No PIN is on a command line: init-token.js reads them from stdin. swtok PINs are 4-8 characters,
# so the random PINs are 8 hex digits. The SO PIN is random and forgotten, unless KMS_KEEP_SO_PINS
# names a directory (tests that measure what the SO may do), where it is kept as LABEL.so-pin (0600).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data=/var/lib/opencryptoki/swtok
shm=/dev/shm/var.lib.opencryptoki.swtok
marker="$data/.kms-test-token"
pidfile=/var/run/pkcsslotd.pid
lib=/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so

die() { echo "opencryptoki-token: $1" >&2; exit "${2:-1}"; }

daemon_pid() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = pkcsslotd ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && echo "$pid"
  return 0
}

# pkcsslotd ignores SIGTERM while a process still has the library initialised: SIGKILL after a grace
# period (and at once for daemon-stop, which plays a device unplugged)
stop_daemon() {
  local pid grace="$1"
  pid="$(daemon_pid)"
  [ -n "$pid" ] || return 0
  [ "$(cat "$marker" 2>/dev/null || true)" = "$pid" ] || die "pkcsslotd $pid was not started by these tests: stop it first (systemctl stop pkcsslotd)" 3
  [ "$grace" = 0 ] || kill "$pid"
  for _ in $(seq "$grace"); do [ -n "$(daemon_pid)" ] || break; sleep 0.1; done
  [ -z "$(daemon_pid)" ] || kill -KILL "$pid"
  for _ in $(seq 50); do [ -n "$(daemon_pid)" ] || break; sleep 0.1; done
  [ -z "$(daemon_pid)" ] || die "pkcsslotd $pid did not stop"
}

wipe() {
  if [ -f "$data/NVTOK.DAT" ] && [ ! -f "$marker" ]; then
    die "$data holds a token these tests did not make: refusing to wipe it" 3
  fi
  rm -f "$data/NVTOK.DAT" "$data/MK_SO" "$data/MK_USER" "$data"/TOK_OBJ/* "$shm" "$marker"
}

# pkcsslotd keeps the stdio it was started with: a log file, not the caller's pipes
start_daemon() {
  local log=/var/log/opencryptoki/kms-test-pkcsslotd.log
  /usr/sbin/pkcsslotd </dev/null >>"$log" 2>&1
  local pid=""
  for _ in $(seq 50); do pid="$(daemon_pid)"; [ -n "$pid" ] && [ -S /var/run/pkcsslotd.socket ] && break; sleep 0.1; done
  [ -n "$pid" ] || die "pkcsslotd did not start: $(tail -n 3 "$log" | tr '\n' ' ')"
  echo "$pid" > "$marker"
}

start() {
  local dir="$1" label="$2"
  [[ "$label" =~ ^[A-Za-z0-9._-]{1,32}$ ]] || die "bad token label: $label" 2
  [ "$(id -u)" = 0 ] || die "needs root (pkcsslotd and $data are root:pkcs11)" 2
  [ -x /usr/sbin/pkcsslotd ] && [ -f "$lib" ] || die "openCryptoki not installed: apt-get install opencryptoki" 2
  getent group pkcs11 >/dev/null || die "group pkcs11 missing: reinstall opencryptoki" 2
  local init_token="$here/../dist/src/cli/init-token.js"
  [ -f "$init_token" ] || die "$init_token not found: build first (npx tsc -p tsconfig.json)" 2
  stop_daemon 30
  wipe
  # what systemd-tmpfiles would create (opencryptoki's tmpfiles.d); a container may not have run it
  mkdir -p "$(readlink -f /var/lock)" "$(readlink -f /var/run)"  # /run/lock may be missing in a container
  for d in /var/lock/opencryptoki /var/lock/opencryptoki/swtok /var/log/opencryptoki "$data" "$data/TOK_OBJ"; do
    mkdir -p "$d" && chgrp pkcs11 "$d" && chmod 0770 "$d"
  done
  start_daemon
  umask 077
  mkdir -p "$dir/pins"
  local pin so_pin
  pin="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"; so_pin="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s' "$pin" > "$dir/pins/$label.pin"
  if [ -n "${KMS_KEEP_SO_PINS:-}" ]; then mkdir -p "$KMS_KEEP_SO_PINS" && printf '%s' "$so_pin" > "$KMS_KEEP_SO_PINS/$label.so-pin"; fi
  printf '%s\n%s\n' "$so_pin" "$pin" | node "$init_token" --profile opencryptoki-swtok "$label"
  unset pin so_pin
  echo "$lib"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: $0 start DIR LABEL" 2; start "$2" "$3" ;;
  stop) stop_daemon 30; wipe ;;
  daemon-stop) stop_daemon 0 ;;
  daemon-start) [ -f "$marker" ] || die "no test token: run start first" 2; [ -z "$(daemon_pid)" ] || die "pkcsslotd is running already" 2; start_daemon ;;
  *) die "usage: $0 start DIR LABEL | stop | daemon-stop | daemon-start" 2 ;;
esac
