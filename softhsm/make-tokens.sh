#!/usr/bin/env bash
# Makes SoftHSM2 tokens in an isolated directory with random PINs.
#
#   softhsm/make-tokens.sh DIR LABEL [LABEL ...]
#
# Writes DIR/softhsm2.conf (from softhsm2.conf.template), DIR/tokens/ and, per label,
# DIR/pins/LABEL.pin (mode 0600). Existing tokens are kept, so re-running is safe. Prints the
# SOFTHSM2_CONF to export. Needs a build (dist/src/cli/init-token.js).
#
# No PIN is ever on a command line: tokens are initialised through PKCS#11 (C_InitToken,
# C_InitPIN) by init-token.js, which reads both PINs from stdin. The SO PIN is random and
# forgotten once the user PIN is set, unless KMS_KEEP_SO_PINS names a directory (development
# only: kmsctl init --dev), where it is kept as LABEL.so-pin (mode 0600), away from the user PINs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 DIR LABEL [LABEL ...]" >&2; exit 2; }
dir="$(mkdir -p "$1" && cd "$1" && pwd)"; shift
case "$dir" in /var/lib/softhsm*) echo "refusing to use the system token directory $dir" >&2; exit 2;; esac
command -v softhsm2-util >/dev/null || { echo "softhsm2-util not found: apt-get install softhsm2" >&2; exit 1; }
init_token="$here/../dist/src/cli/init-token.js"
[ -f "$init_token" ] || { echo "$init_token not found: build first (npx tsc -p tsconfig.json)" >&2; exit 1; }
keep="${KMS_KEEP_SO_PINS:-}"
umask 077
mkdir -p "$dir/tokens" "$dir/pins"
[ -z "$keep" ] || mkdir -p "$keep"
sed "s#@TOKENDIR@#$dir/tokens#" "$here/softhsm2.conf.template" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
random_pin() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
for label in "$@"; do
  [[ "$label" =~ ^[A-Za-z0-9._-]{1,32}$ ]] || { echo "bad token label: $label" >&2; exit 2; }
  if softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$label[[:space:]]*$"; then
    continue
  fi
  pin="$(random_pin)"; so_pin="$(random_pin)"
  # printf is a shell builtin: the PINs go to the file and the pipe without being any process's argument
  printf '%s' "$pin" > "$dir/pins/$label.pin"
  [ -z "$keep" ] || printf '%s' "$so_pin" > "$keep/$label.so-pin"
  printf '%s\n%s\n' "$so_pin" "$pin" | node "$init_token" "$label"
  unset pin so_pin
done
echo "$SOFTHSM2_CONF"
