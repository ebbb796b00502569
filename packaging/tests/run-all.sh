#!/usr/bin/env bash
# Everything `make deb-test` checks on a built package: lintian, the unit's exposure score, and
# the install / upgrade / remove / purge test in a throw-away root. Needs root.
#
#   run-all.sh target/debian/ttp-worker_VERSION_ARCH.deb
set -euo pipefail
deb=$(realpath "${1:?usage: run-all.sh PACKAGE.deb}")
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"

# The upgrade: the same build repackaged with a higher Debian revision. cargo-deb clears
# target/debian/ when it packs, so the package under test is copied aside first.
version=$(dpkg-deb -f "$deb" Version)
upgrade_dir=target/deb-test/upgrade
rm -rf "$upgrade_dir"; mkdir -p "$upgrade_dir"
[ "$deb" -ef "target/deb-test/$(basename "$deb")" ] || cp "$deb" target/deb-test/
deb=$top/target/deb-test/$(basename "$deb")
cargo deb --locked --no-build --deb-version "${version%-*}-$(( ${version##*-} + 1 ))" \
    --output "$upgrade_dir/" >/dev/null
upgrade=$(ls "$upgrade_dir"/*.deb)
mkdir -p target/debian
[ -e "target/debian/$(basename "$deb")" ] || cp "$deb" target/debian/   # put back what cargo-deb cleared

"$here/lintian.sh" "$deb"
echo "== systemd-analyze security --offline=true (the shipped unit)"
"$here/unit-security.sh" "$top/packaging/ttp-worker.service" | tail -2
echo "== systemd-analyze security --offline=true (the bridge's unit)"
"$here/unit-security.sh" "$top/packaging/bridge/ttp-worker-bridge.service" | tail -2
echo "== the unit's system call filter against the packaged daemon's real calls (strace)"
extract=$(mktemp -d)
chmod 755 "$extract"  # the daemon runs as nobody
dpkg-deb -x "$deb" "$extract"
python3 "$here/syscalls.py" "$extract/usr/bin/ttp-worker" "$extract/usr/lib/systemd/system/ttp-worker.service"
rm -rf "$extract"
"$here/install.sh" "$deb" "$upgrade"
echo "== under a real systemd: a Debian VM (qemu)"
# Opt-in: booting under software emulation takes minutes and needs qemu-system-x86.
if [ "${TTP_DEB_TEST_VM:-0}" != 1 ]; then
    echo "SKIPPED: set TTP_DEB_TEST_VM=1 (and install qemu-system-x86) to boot the package under systemd"
elif command -v qemu-system-x86_64 >/dev/null && [ -f "${TTP_DEB_TEST_BASE:-}" ]; then
    "$here/vm.sh" "$deb" "$upgrade" "$TTP_DEB_TEST_BASE"
else
    echo "SKIPPED: needs qemu-system-x86_64 and TTP_DEB_TEST_BASE (make deb-test sets it)"
fi
