#!/bin/sh
# peon's container entrypoint (PEON's init/peon.orc): pre-flight checks with clear messages,
# then the daemon. Arguments are passed to `peon serve` (a leading `serve` is optional); a
# command that does not start with `-` or `serve` runs as given.
#
# Checks (by `peon preflight`, since the image has no docker CLI):
#   - the Docker socket is mounted and the engine answers;
#   - the data dir (PEON_DATA_DIR, /home/peon) is writable;
#   - the data dir's path on the host (HOST_DIR or PEON_HOST_DIR) is set: game containers are
#     siblings of this one, so their bind mounts name host paths.
# A failed check is retried PEON_PREFLIGHT_TRIES times (default 3), PEON_PREFLIGHT_DELAY seconds
# apart (default 5); then the container exits non-zero after that delay, so a restart policy
# does not spin.
set -eu

tries="${PEON_PREFLIGHT_TRIES:-3}"
delay="${PEON_PREFLIGHT_DELAY:-5}"

if [ "${1:-}" = "serve" ]; then
  shift
elif [ "${1:-}" != "" ] && [ "${1#-}" = "$1" ]; then
  # A command other than serve flags (e.g. `docker run peon peon servers`): run it as is.
  exec "$@"
fi

echo "peon.orc: peon ${VERSION:-unknown}, data dir ${PEON_DATA_DIR:-/home/peon}"

if [ "${PEON_SKIP_PREFLIGHT:-0}" = "1" ]; then
  echo "peon.orc: PEON_SKIP_PREFLIGHT=1: skipping the pre-flight checks"
else
  n=1
  until peon preflight --in-container; do
    if [ "$n" -ge "$tries" ]; then
      echo "peon.orc: pre-flight checks failed $n times; fix the problems above and start the container again" >&2
      sleep "$delay"
      exit 1
    fi
    echo "peon.orc: retrying the pre-flight checks in ${delay}s ($n/$tries)" >&2
    n=$((n + 1))
    sleep "$delay"
  done
fi

exec peon serve "$@"
