#!/usr/bin/env bash
# Makes sure the unprivileged user contained local jobs run their steps as
# exists (default solstice-job; see docs/security.md). Idempotent. Only root
# can create it - and only a node running as root contains jobs - so as
# another user this says so and changes nothing.
# Usage: scripts/ensure-job-user.sh [USER]
set -euo pipefail

user=${1:-${SOLSTICE_DRIVERS_LOCAL_JOB_USER:-solstice-job}}
if id -u "$user" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "job user $user missing; not root, so not creating it (jobs are not contained without root anyway)" >&2
    exit 0
fi
if ! command -v useradd >/dev/null; then
    echo "ERROR: useradd not found; create the user $user by hand (docs/security.md)" >&2
    exit 1
fi
# A system user with its own group, no home and no login shell: steps get a
# home directory inside their job's directory instead.
useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
echo "created the job user $user" >&2
