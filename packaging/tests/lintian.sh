#!/usr/bin/env bash
# lintian on the built package: no error and no warning. The only tags allowed are those
# overridden in packaging/lintian-overrides (shipped in the package), each with its reason.
set -euo pipefail
deb=${1:?usage: lintian.sh PACKAGE.deb}
here=$(cd "$(dirname "$0")" && pwd)
overrides=$here/../lintian-overrides

# Every override must follow a comment giving its reason.
awk '/^#/ { reason = 1; next } /^[[:space:]]*$/ { reason = 0; next }
     { if (!reason) { print FILENAME ": override without a reason: " $0; bad = 1 } }
     END { exit bad }' "$overrides"

echo "== lintian $(lintian --version | awk '{print $2}') on $(basename "$deb")"
# --fail-on: exit non-zero on any error or warning that is not overridden. (Not with
# --show-overrides: lintian 2.116 then fails on the overridden tags too.)
lintian --fail-on error,warning --display-info --tag-display-limit 0 "$deb"
echo "overridden (packaging/lintian-overrides):"
grep -v '^#' "$overrides" | grep . | sed 's/^/  /' || echo "  none"
echo "lintian: no errors, no warnings beyond packaging/lintian-overrides"
