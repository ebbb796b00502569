#!/usr/bin/env bash
# systemd-analyze security --offline of the shipped unit: the exposure score must be 2.0 or
# better (lower). Works without a running systemd. Prints the full table and the score.
set -euo pipefail
unit=${1:-$(cd "$(dirname "$0")/.." && pwd)/ttp-worker.service}
limit=${TTP_WORKER_MAX_EXPOSURE:-2.0}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Give the unit its installed name; the offline analysis reads the file as it is.
cp "$unit" "$dir/ttp-worker.service"
report=$(cd "$dir" && systemd-analyze security --offline=true --no-pager ./ttp-worker.service 2>&1) || true
echo "$report"
score=$(sed -n 's/.*Overall exposure level for ttp-worker.service: \([0-9.]*\).*/\1/p' <<<"$report")
if [ -z "$score" ]; then
    echo "unit-security: no exposure score in the output above" >&2
    exit 1
fi
echo "exposure score: $score (limit $limit)"
awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s <= l) }' || {
    echo "unit-security: exposure $score is above $limit" >&2
    exit 1
}
