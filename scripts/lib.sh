# shellcheck shell=bash
# Shared helpers for the project's shell scripts (sourced, not executed).

step() { printf '==> %s\n' "$*"; }

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# require_tool <command> <how to get it>: fail loudly, naming the tool and the fix.
require_tool() {
    command -v "$1" >/dev/null 2>&1 || die "required tool '$1' not found; install $2"
}
