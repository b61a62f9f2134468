#!/usr/bin/env bash
# Remove gatectl (scripts/install.sh's work): the unit (stopped, disabled), the wrapper and
# /opt/gatectl. The data stay unless asked: /var/lib/gatectl (store, snapshots, enrollment
# photos), /etc/gatectl and /var/log/gatectl, and the gatectl user that owns them, so a
# reinstall finds everything as it was.
#
#   sudo scripts/uninstall.sh [--root DIR] [--erase-data]
#
# --erase-data: also delete the state folder, the config, the logs and the user. Residents'
#   faces and events are then gone for good (take `gatectl backup FILE` first if in doubt).
# --root DIR: as install.sh's: under DIR, `systemctl --root`, `userdel --prefix` when root.
set -euo pipefail

ROOT=""
ERASE=0
USER_NAME=gatectl

die() { echo "uninstall.sh: $*" >&2; exit 2; }
say() { echo "uninstall.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT="$(realpath -m "$2")"; shift 2 ;;
    --erase-data) ERASE=1; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ] && die "run as root (sudo), or give --root DIR"

UNIT="$ROOT/etc/systemd/system/gatectl.service"
if [ -z "$ROOT" ]; then
  if [ -e "$UNIT" ]; then
    systemctl disable --now gatectl.service || true  # a unit that is not loaded is fine
  fi
elif [ -e "$UNIT" ] && command -v systemctl >/dev/null; then
  systemctl --root="$ROOT" disable gatectl.service
fi
rm -f "$UNIT" "$ROOT/usr/local/bin/gatectl"
rm -rf "$ROOT/opt/gatectl"
[ -z "$ROOT" ] && systemctl daemon-reload

if [ "$ERASE" -eq 1 ]; then
  rm -rf "$ROOT/var/lib/gatectl" "$ROOT/etc/gatectl" "$ROOT/var/log/gatectl"
  if [ -z "$ROOT" ]; then
    if getent passwd "$USER_NAME" >/dev/null; then userdel "$USER_NAME"; fi
  elif [ "$(id -u)" -eq 0 ] && grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
    userdel --prefix "$ROOT" "$USER_NAME"
  fi
  say "removed gatectl and erased its data"
else
  say "removed gatectl; kept ${ROOT}/var/lib/gatectl, ${ROOT}/etc/gatectl, ${ROOT}/var/log/gatectl" \
    "and the user $USER_NAME (--erase-data deletes them)"
fi
