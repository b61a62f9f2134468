#!/usr/bin/env bash
# Install gatectl as a service, or upgrade it in place (re-running keeps the store, snapshots
# and the edited config): the `gatectl` system user (groups dialout, video), a venv under
# /opt/gatectl, /etc/gatectl/gatectl.toml from an example (never overwritten), the state folder
# /var/lib/gatectl, the `gatectl` wrapper in /usr/local/bin (runs as the service user on the
# service's config and state, so `sudo gatectl residents list` works) and the systemd unit,
# enabled.
#
#   sudo scripts/install.sh [--root DIR] [--wheel FILE] [--example NAME] [--system-site-packages]
#                           [--pip-args "ARGS"]
#
# --root DIR: everything is written under DIR (a throwaway root, an image being built) with the
#   final paths inside the files. The user is created with `useradd --prefix DIR` when we are
#   root and DIR/etc/passwd exists, otherwise skipped (said on stderr); ownership changes are
#   skipped (the uid exists only in DIR); the unit is enabled with `systemctl --root DIR` when
#   systemctl is there; nothing is started or restarted.
# --wheel FILE: install this wheel instead of one built from this checkout.
# --example NAME: the config/NAME.toml a first install copies (default lobby-face-gate).
# --system-site-packages: the venv sees the distribution's Python packages (python3-numpy,
#   python3-opencv on a Pi), so pip installs only what they lack.
# --pip-args: extra pip arguments (e.g. "--no-index --find-links /media/usb/wheels" offline).
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT=""
WHEEL=""
EXAMPLE="lobby-face-gate"
VENV_ARGS=()
PIP_ARGS=()
USER_NAME=gatectl

die() { echo "install.sh: $*" >&2; exit 2; }
say() { echo "install.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT="$(realpath -m "$2")"; shift 2 ;;
    --wheel) [ $# -ge 2 ] || die "--wheel needs a file"; WHEEL="$(realpath "$2")"; shift 2 ;;
    --example) [ $# -ge 2 ] || die "--example needs a name"; EXAMPLE="$2"; shift 2 ;;
    --system-site-packages) VENV_ARGS+=(--system-site-packages); shift ;;
    --pip-args) [ $# -ge 2 ] || die "--pip-args needs a value"; read -r -a PIP_ARGS <<< "$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ] && die "run as root (sudo), or give --root DIR"
example="$SRC/config/$EXAMPLE.toml"
[ -f "$example" ] || die "--example: no $example"
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "--wheel: no file $WHEEL"

OPT="$ROOT/opt/gatectl"
VENV="$OPT/venv"
ETC="$ROOT/etc/gatectl"
STATE="$ROOT/var/lib/gatectl"
LOGS="$ROOT/var/log/gatectl"
UNIT_DIR="$ROOT/etc/systemd/system"
BIN="$ROOT/usr/local/bin"

# --- the service user -----------------------------------------------------------------------
# the group of a user removed by hand may still be there: join it rather than fail
own_group() {
  if [ -z "$ROOT" ]; then getent group "$USER_NAME" >/dev/null
  else grep -q "^$USER_NAME:" "$ROOT/etc/group" 2>/dev/null; fi
}
have_user() {
  if [ -z "$ROOT" ]; then getent passwd "$USER_NAME" >/dev/null
  else grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; fi
}
group_arg=(--user-group)
if [ -z "$ROOT" ]; then
  for g in dialout video; do getent group "$g" >/dev/null || groupadd --system "$g"; done
  own_group && group_arg=(--gid "$USER_NAME")
  if have_user; then
    usermod -a -G dialout,video "$USER_NAME"  # an upgrade keeps the groups the unit needs
  else
    useradd --system "${group_arg[@]}" --groups dialout,video --home-dir /var/lib/gatectl \
      --no-create-home --shell /usr/sbin/nologin --comment "gatectl gate controller" "$USER_NAME"
  fi
elif [ "$(id -u)" -eq 0 ] && [ -f "$ROOT/etc/passwd" ] && command -v useradd >/dev/null; then
  for g in dialout video; do
    grep -q "^$g:" "$ROOT/etc/group" || groupadd --prefix "$ROOT" --system "$g"
  done
  own_group && group_arg=(--gid "$USER_NAME")
  have_user || useradd --prefix "$ROOT" --system "${group_arg[@]}" --groups dialout,video \
    --home-dir /var/lib/gatectl --no-create-home --shell /usr/sbin/nologin \
    --comment "gatectl gate controller" "$USER_NAME"
else
  say "--root: user $USER_NAME not created (needs root and $ROOT/etc/passwd)"
fi

# --- the venv and the package ----------------------------------------------------------------
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fresh=1
[ -x "$VENV/bin/python" ] && fresh=0
if [ "$fresh" -eq 1 ]; then
  mkdir -p "$OPT"
  python3 -m venv "${VENV_ARGS[@]}" "$VENV"
fi
if [ -z "$WHEEL" ]; then
  "$VENV/bin/pip" wheel -q --no-deps "${PIP_ARGS[@]}" -w "$tmp" "$SRC"
  WHEEL="$(ls "$tmp"/gatectl-*.whl)"
fi
"$VENV/bin/pip" install -q "${PIP_ARGS[@]}" "$WHEEL"
if [ "$fresh" -eq 0 ]; then  # same version number, new code: put this wheel's files in place
  "$VENV/bin/pip" install -q --force-reinstall --no-deps "${PIP_ARGS[@]}" "$WHEEL"
fi

# --- config, state, logs ---------------------------------------------------------------------
install -d -m 0750 "$ETC" "$STATE" "$LOGS"
if [ -e "$ETC/gatectl.toml" ]; then
  say "kept $ETC/gatectl.toml (yours); the new example is $SRC/config/$EXAMPLE.toml"
else
  install -m 0640 "$example" "$ETC/gatectl.toml"
  say "wrote $ETC/gatectl.toml from config/$EXAMPLE.toml: edit it, then gatectl config check"
fi
if [ -z "$ROOT" ]; then
  chown root:"$USER_NAME" "$ETC" "$ETC/gatectl.toml"
  chown "$USER_NAME:$USER_NAME" "$STATE" "$LOGS"
fi

# --- the wrapper ------------------------------------------------------------------------------
install -d "$BIN"
cat > "$tmp/gatectl" <<'WRAPPER'
#!/bin/sh
# gatectl on the service's config and state folder, as the service user (scripts/install.sh):
# files the CLI creates there (the SQLite WAL, snapshots) must belong to the service.
# $GATECTL_ROOT (an image or a test root) prefixes every path and runs as the caller.
root="${GATECTL_ROOT:-}"
export GATECTL_CONFIG="$root/etc/gatectl/gatectl.toml"
export STATE_DIRECTORY="$root/var/lib/gatectl"
py="$root/opt/gatectl/venv/bin/python"
if [ -n "$root" ]; then
  exec "$py" -m gatectl "$@"
fi
# -I: as the service user, import nothing from the caller's folder or PYTHON* variables
if [ "$(id -un)" = gatectl ]; then
  exec "$py" -I -m gatectl "$@"
fi
id -u gatectl >/dev/null 2>&1 || { echo "gatectl: no user gatectl: run scripts/install.sh" >&2; exit 2; }
keep="GATECTL_CONFIG=$GATECTL_CONFIG STATE_DIRECTORY=$STATE_DIRECTORY HOME=/var/lib/gatectl"
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u gatectl -- env $keep "$py" -I -m gatectl "$@"
fi
exec sudo -u gatectl env $keep "$py" -I -m gatectl "$@"
WRAPPER
install -m 0755 "$tmp/gatectl" "$BIN/gatectl"

# --- the unit ---------------------------------------------------------------------------------
install -d "$UNIT_DIR"
install -m 0644 "$SRC/systemd/gatectl.service" "$UNIT_DIR/gatectl.service"
if [ -z "$ROOT" ]; then
  systemctl daemon-reload
  systemctl enable gatectl.service
  systemctl try-restart gatectl.service  # an upgrade of a running service takes effect now
  systemctl is-active -q gatectl.service || say "enabled; start it with: systemctl start gatectl"
elif command -v systemctl >/dev/null; then
  systemctl --root="$ROOT" enable gatectl.service
else
  say "--root: no systemctl here: the unit is installed but not enabled"
fi
say "installed gatectl $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("gatectl"))') under ${ROOT:-/}"
