#!/usr/bin/env bash
# The package under a real systemd: boots a small Debian VM (qemu, KVM when available) made
# from the debootstrapped root plus Debian's cloud kernel and nats-server, and runs
# vm-inside.sh in it at boot: install starts and enables the service, the sandboxed daemon
# connects to NATS and tags, reload / stop / start through the alias, restart after a crash,
# upgrade restarts it, remove stops it, purge removes its user and store.
#
#   vm.sh PACKAGE.deb UPGRADE.deb BASE.tar
#
# BASE.tar is the pristine root install.sh caches. Needs root, qemu-system-x86, e2fsprogs and
# Debian's mirror (for the kernel and nats-server).
set -euo pipefail
deb=$(realpath "$1"); upgrade=$(realpath "$2"); base=$(realpath "$3")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /var/tmp/ttp-vm-test.XXXXXX)
root=$work/root
cleanup() { umount "$root/proc" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== VM root: the test root plus linux-image-cloud-amd64 and nats-server"
mkdir "$root"
tar -C "$root" -xf "$base"
mount -t proc proc "$root/proc"
chroot "$root" bash -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends linux-image-cloud-amd64 nats-server udev' \
    >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; exit 1; }
umount "$root/proc"
install -m 0755 "$here/vm-inside.sh" "$root/root/vm-inside.sh"
cp "$deb" "$root/root/ttp-worker.deb"
cp "$upgrade" "$root/root/ttp-worker-upgrade.deb"
cat >"$root/etc/systemd/system/ttp-vm-test.service" <<'UNIT'
[Unit]
Description=ttp-worker package test
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/root/vm-inside.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/ttp-vm-test.service "$root/etc/systemd/system/multi-user.target.wants/"
# The console is the test's: no login prompt on it.
ln -s /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
echo "/dev/vda / ext4 rw 0 1" >"$root/etc/fstab"
echo ttp-vm >"$root/etc/hostname"
kernel=$(ls "$root"/boot/vmlinuz-*); initrd=$(ls "$root"/boot/initrd.img-*)
cp "$kernel" "$initrd" "$work/"
truncate -s 2G "$work/disk.img"
mkfs.ext4 -q -F -d "$root" "$work/disk.img"

# Software emulation by default: KVM inside this project's (nested) machines fails on the
# guest kernel's first cmpxchg16b. TTP_VM_ACCEL=kvm where it works.
accel=${TTP_VM_ACCEL:-tcg}
cpu=max; [ "$accel" = kvm ] && cpu=host
echo "== booting ($accel)"
timeout "${TTP_VM_TIMEOUT:-600}" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m 1024 -smp 2 \
    -display none -monitor none -serial "file:$work/serial.log" -no-reboot -nic none \
    -kernel "$work/$(basename "$kernel")" -initrd "$work/$(basename "$initrd")" \
    -append "root=/dev/vda rw init=/lib/systemd/systemd console=ttyS0 quiet systemd.show_status=0" \
    -drive "file=$work/disk.img,format=raw,if=virtio" || true
grep -a '^VM' "$work/serial.log" || true
if ! grep -aq '^VM-TEST DONE failures=0' "$work/serial.log"; then
    echo "vm test failed; the console:" >&2
    tail -50 "$work/serial.log" >&2
    exit 1
fi
echo "vm test: passed under systemd $(grep -a '^VM systemd' "$work/serial.log" | awk '{print $4}')"
