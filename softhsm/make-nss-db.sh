#!/usr/bin/env bash
# Makes an NSS softokn database (a PKCS#11 token: "NSS Certificate DB") with a random PIN.
#
#   softhsm/make-nss-db.sh DIR
#
# Writes DIR/db (sql: format) and DIR/pins/nss.pin (mode 0600). Re-running keeps an existing DB.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
command -v certutil >/dev/null || { echo "certutil not found: apt-get install libnss3-tools" >&2; exit 1; }
umask 077
mkdir -p "$dir/db" "$dir/pins"
if [ ! -f "$dir/db/cert9.db" ]; then
  od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$dir/pins/nss.pin"
  certutil -N -d "sql:$dir/db" -f "$dir/pins/nss.pin" >/dev/null
fi
echo "$dir/db"
