#!/usr/bin/env bash
# Install test of the Debian package in a throw-away Debian root (debootstrap, minbase plus
# systemd; no systemd runs there, as in this container): install, what the install created,
# the unit verified, the daemon run as its service user with the unit's settings, upgrade,
# remove and purge.
#
#   install.sh PACKAGE.deb UPGRADE.deb
#
# UPGRADE.deb is the same package with a higher version (run-all.sh builds it). Needs root,
# debootstrap and Debian's mirror. TTP_DEB_TEST_BASE=FILE.tar caches the pristine root between
# runs (made on the first one); TTP_DEB_MIRROR picks the mirror.
set -euo pipefail
deb=$(realpath "${1:?usage: install.sh PACKAGE.deb UPGRADE.deb}")
upgrade=$(realpath "${2:?usage: install.sh PACKAGE.deb UPGRADE.deb}")
mirror=${TTP_DEB_MIRROR:-http://deb.debian.org/debian}
suite=${TTP_DEB_SUITE:-bookworm}
base=${TTP_DEB_TEST_BASE:-}

work=$(mktemp -d /var/tmp/ttp-deb-test.XXXXXX)
root=$work/root
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
pass() { passed=$((passed + 1)); echo "  ok   $*"; }
fail() { echo "  FAIL $*" >&2; exit 1; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
in_root() { chroot "$root" "$@"; }
absent() { [ ! -e "$root$1" ] && [ ! -L "$root$1" ]; }

echo "== throw-away root ($suite, minbase + systemd, procps) in $root"
mkdir -p "$root"
if [ -n "$base" ] && [ -f "$base" ]; then
    tar -C "$root" -xf "$base"
else
    debootstrap --variant=minbase --include=systemd,procps "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
    if [ -n "$base" ]; then mkdir -p "$(dirname "$base")"; tar -C "$root" -cf "$base" .; fi
fi
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/ttp-worker.deb"
cp "$upgrade" "$root/tmp/ttp-worker-upgrade.deb"
check "no systemd runs in the root (so the maintainer scripts do not start anything)" \
    test ! -d "$root/run/systemd/system"

echo "== install: $(basename "$deb")"
# A DECNET host has the group of DECNET's broker socket; the postinst gives it to ttp-worker.
in_root groupadd --system decnet
in_root dpkg -i /tmp/ttp-worker.deb
check "dpkg reports the package installed" \
    bash -c "chroot '$root' dpkg-query -W -f='\${Status}' ttp-worker | grep -qx 'install ok installed'"
version=$(in_root ttp-worker --version)
check "the binary runs: '$version'" grep -q '^ttp-worker [0-9]' <<<"$version"
unit=$(in_root dpkg -L ttp-worker | grep '/systemd/system/ttp-worker.service$')
check "the unit is installed ($unit)" test -f "$root$unit"
check "systemd-analyze verify passes on the installed unit (man page checked below)" \
    chroot "$root" systemd-analyze verify --man=no "$unit"
passwd=$(in_root getent passwd ttp-worker || true)
check "sysusers created the system user: $passwd" test -n "$passwd"
IFS=: read -r _ _ uid gid _ home shell <<<"$passwd"
check "its uid $uid is a system uid" test "$uid" -lt 1000
check "its home is the state directory" test "$home" = /var/lib/ttp-worker
check "it cannot log in ($shell)" bash -c "case '$shell' in */nologin|*/false) ;; *) exit 1;; esac"
check "its group exists" bash -c "chroot '$root' getent group ttp-worker | grep -q ':$gid:'"
check "enabled: multi-user.target wants ttp-worker.service" \
    test -L "$root/etc/systemd/system/multi-user.target.wants/ttp-worker.service"
check "enabled: the alias decnet-ttp.service exists for DECNET's dashboard" \
    test -L "$root/etc/systemd/system/decnet-ttp.service"
bridge_unit=$(in_root dpkg -L ttp-worker | grep '/systemd/system/ttp-worker-bridge.service$')
check "the bridge's unit is installed ($bridge_unit)" test -f "$root$bridge_unit"
check "systemd-analyze verify passes on the bridge's unit" \
    chroot "$root" systemd-analyze verify --man=no "$bridge_unit"
check "enabled: multi-user.target wants ttp-worker-bridge.service" \
    test -L "$root/etc/systemd/system/multi-user.target.wants/ttp-worker-bridge.service"
check "the postinst put ttp-worker in DECNET's group decnet" \
    bash -c "chroot '$root' id -nG ttp-worker | tr ' ' '\\n' | grep -qx decnet"
check "/etc/default/ttp-worker is a conffile" \
    bash -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' ttp-worker | grep -q ' /etc/default/ttp-worker '"
check "every setting in /etc/default/ttp-worker is commented out" \
    bash -c "! grep -Ev '^(#|$)' '$root/etc/default/ttp-worker'"
check "/etc/ttp-worker/rules.d/ exists for local rules" test -d "$root/etc/ttp-worker/rules.d"
check "the man page is installed" test -f "$root/usr/share/man/man1/ttp-worker.1.gz"
check "copyright and changelog are installed" \
    test -f "$root/usr/share/doc/ttp-worker/copyright" -a -f "$root/usr/share/doc/ttp-worker/changelog.Debian.gz"
check "the postinst restarts the service on upgrade (when systemd runs)" \
    grep -q '_dh_action=restart' "$root/var/lib/dpkg/info/ttp-worker.postinst"
check "the prerm stops the service on remove (when systemd runs)" \
    grep -q 'deb-systemd-invoke stop' "$root/var/lib/dpkg/info/ttp-worker.prerm"

echo "== the daemon as the unit runs it (its user, its environment; no bus)"
# What systemd would do: StateDirectory= creates /var/lib/ttp-worker for the user, the unit's
# Environment= and EnvironmentFile= set the variables.
install -d -m 0750 -o "$uid" -g "$gid" "$root/var/lib/ttp-worker"
env_line=$(sed -n 's/^Environment=//p' "$root$unit")
cat >"$root/tmp/run-as-unit.sh" <<SCRIPT
set -a
$env_line
. /etc/default/ttp-worker
STATE_DIRECTORY=/var/lib/ttp-worker
set +a
exec /usr/bin/ttp-worker --no-bus --poll-interval 0.2
SCRIPT
chroot --userspec="$uid:$gid" "$root" env -i PATH=/usr/bin:/bin HOME=/ sh /tmp/run-as-unit.sh \
    2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do grep -q 'starting' "$work/daemon.log" && break; sleep 0.05; done
check "the daemon starts with the built-in pack" grep -q 'starting: [1-9][0-9]* rules (0 problems)' "$work/daemon.log"
check "it keeps its store in the state directory" test -f "$root/var/lib/ttp-worker/ttp.db"
kill -TERM "$daemon_pid"
status=0; wait "$daemon_pid" || status=$?; daemon_pid=
check "SIGTERM stops it with status 0" test "$status" = 0
check "check-rules accepts the packaged rules.d" \
    chroot "$root" ttp-worker check-rules --local-rules /etc/ttp-worker/rules.d

echo "== local edits, then upgrade: $(basename "$upgrade")"
echo 'DECNET_TTP_POLL_INTERVAL=30' >>"$root/etc/default/ttp-worker"
cp "$root/usr/share/doc/ttp-worker/README.md" "$root/etc/ttp-worker/rules.d/local-notes.txt"
db_sum=$(sha256sum <"$root/var/lib/ttp-worker/ttp.db")
in_root dpkg -i /tmp/ttp-worker-upgrade.deb
new_version=$(in_root dpkg-query -W -f='${Version}' ttp-worker)
check "upgraded to $new_version" test "$new_version" = "$(dpkg-deb -f "$upgrade" Version)"
check "the /etc/default edit is kept" grep -qx 'DECNET_TTP_POLL_INTERVAL=30' "$root/etc/default/ttp-worker"
check "files in /etc/ttp-worker/rules.d are kept" test -f "$root/etc/ttp-worker/rules.d/local-notes.txt"
check "the store is kept, unchanged" bash -c "test \"\$(sha256sum <'$root/var/lib/ttp-worker/ttp.db')\" = '$db_sum'"
check "the user keeps its uid" bash -c "chroot '$root' getent passwd ttp-worker | grep -q '^ttp-worker:x:$uid:'"
check "still enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/ttp-worker.service"

echo "== remove"
in_root dpkg -r ttp-worker
check "the binary is gone" absent /usr/bin/ttp-worker
check "the unit is gone" absent "$unit"
check "/etc/default/ttp-worker (with its edit) is kept" grep -qx 'DECNET_TTP_POLL_INTERVAL=30' "$root/etc/default/ttp-worker"
check "the store is kept" test -f "$root/var/lib/ttp-worker/ttp.db"
check "the user is kept" bash -c "chroot '$root' getent passwd ttp-worker >/dev/null"

echo "== purge"
in_root dpkg -P ttp-worker
check "dpkg no longer knows the package" bash -c "! chroot '$root' dpkg-query -W ttp-worker 2>/dev/null | grep -q ."
check "/etc/default/ttp-worker is gone" absent /etc/default/ttp-worker
check "/etc/ttp-worker is gone" absent /etc/ttp-worker
check "/var/lib/ttp-worker (the store) is gone" absent /var/lib/ttp-worker
check "the user is gone" bash -c "! chroot '$root' getent passwd ttp-worker"
check "the group is gone" bash -c "! chroot '$root' getent group ttp-worker"
check "the enablement links are gone" bash -c "! ls '$root'/etc/systemd/system/*/ttp-worker.service '$root'/etc/systemd/system/*/ttp-worker-bridge.service '$root'/etc/systemd/system/decnet-ttp.service 2>/dev/null | grep -q ."
check "no unit mask is left behind" absent /etc/systemd/system/ttp-worker.service

echo "install test: $passed checks passed"
echo "not tested here (no running systemd): the service actually started by systemd, its" \
     "sandbox at run time, start on install, restart on upgrade and stop on remove" \
     "(the maintainer-script lines doing so are checked above)"
