#!/bin/sh
# Container entrypoint, run by tini: `idsync <command> ...`.
#
# State dir: when IDSYNC_STATE_DIR is not set, each container takes a slot of its own under
# IDSYNC_STATE_ROOT (one volume shared by every replica): <root>/<command>-<n>, the lowest n whose
# lock is free. Replicas of `docker-compose up --scale worker=N` thus never share a ledger, and a
# restarted or recreated container takes a free slot back instead of leaving a new folder behind
# each time (a container's host name changes when it is recreated). The lock is an flock on fd 9,
# which `exec` hands to node: it is held exactly as long as idsync runs.
set -eu

if [ -z "${IDSYNC_STATE_DIR:-}" ] && [ -n "${IDSYNC_STATE_ROOT:-}" ]; then
  case "${1:-}" in
    [a-z]*)
      n=1
      while :; do
        dir="$IDSYNC_STATE_ROOT/$1-$n"
        # (A failed redirection on `exec` ends the shell, so writability is checked first.)
        if ! mkdir -p -m 0700 "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
          echo "idsync entrypoint: cannot write $dir; IDSYNC_STATE_ROOT must be writable by uid $(id -u) (a volume, or a host folder owned by it)" >&2
          exit 2
        fi
        exec 9>>"$dir/.slot.lock"
        if flock -n 9; then break; fi
        exec 9>&-
        n=$((n + 1))
        if [ "$n" -gt 1000 ]; then
          echo "idsync entrypoint: no free state slot under $IDSYNC_STATE_ROOT" >&2
          exit 2
        fi
      done
      export IDSYNC_STATE_DIR="$dir"
      ;;
  esac
fi

# exec: node replaces this shell, so tini's SIGTERM reaches idsync itself.
exec node /app/bin/idsync.js "$@"
