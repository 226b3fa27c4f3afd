#!/usr/bin/env bash
# Tries configs/exim-lmtp.snippet and configs/opensmtpd.snippet with Debian's
# Exim and OpenSMTPD on a machine that has Postfix installed (the three
# packages conflict, so neither is installed: each is fetched with
# `apt-get download`, unpacked with `dpkg -x` into a temp dir, and run from
# there on a private config, a private spool and loopback ports).
#
#   configs/try-exim-opensmtpd.sh [PATH_TO_LETTERBOX]   (default: target/debug/letterbox)
#
# Needs root: the MTAs want their own system users (Debian-exim, opensmtpd,
# opensmtpq), which are given to them through a private /etc/passwd
# bind-mounted in a private mount namespace (unshare -m); the real
# /etc/passwd is never changed. Not run by CI: a hand check, kept so that it
# can be repeated. It prints what each MTA logged and checks:
#   Exim:      exim -bV accepts the config; alice and alice+Archive are
#              delivered (to INBOX and Archive); an unknown local part is
#              unrouteable; with letterbox down the message is deferred and
#              delivered by a queue run (-qff) once it is back.
#   OpenSMTPD: smtpd -n accepts the config; alice and alice+Archive (virtual
#              domain) and carol+Archive (a Unix user, local variant) are
#              delivered with the +folder kept; an unknown address is refused
#              during SMTP.
set -euo pipefail

die() { echo "try: FAIL: $*" >&2; exit 1; }
step() { echo "try: $*"; }

cd "$(dirname "$0")/.."
repo=$PWD
bin=${1:-$repo/target/debug/letterbox}
[ -x "$bin" ] || die "no letterbox binary at $bin (cargo build)"
[ "$(id -u)" = 0 ] || die "run as root (unshare -m, mounts)"
for c in apt-get dpkg unshare python3; do command -v "$c" >/dev/null || die "$c is needed"; done

work=$(mktemp -d /tmp/letterbox-try-mta.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
    local rc=$?
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
    if [ "$rc" = 0 ]; then rm -rf "$work"; else echo "try: files kept in $work" >&2; fi
}
trap cleanup EXIT

cd "$work"
step "apt-get download exim4-daemon-light exim4-base exim4-config opensmtpd libidn12"
apt-get download exim4-daemon-light exim4-base exim4-config opensmtpd libidn12 >/dev/null 2>&1 ||
    die "apt-get download failed (run apt-get update?)"
for d in ./*.deb; do dpkg -x "$d" root; done
# exim4 is setuid root in the package; without the bit it keeps
# LD_LIBRARY_PATH (libidn12 comes from the temp dir) when it re-executes.
chmod u-s root/usr/sbin/exim4
lib=$work/root/usr/lib/x86_64-linux-gnu

# A private passwd and group with the MTAs' users, and carol (a Unix user
# for OpenSMTPD's local variant) and letterbox (the delivering user).
cp /etc/passwd passwd
cp /etc/group group
n=64990
for u in Debian-exim opensmtpd opensmtpq letterbox carol; do
    grep -q "^$u:" passwd || echo "$u:x:$n:$n::/nonexistent:/usr/sbin/nologin" >>passwd
    grep -q "^$u:" group || echo "$u:x:$n:" >>group
    n=$((n + 1))
done

cat >ns.sh <<EOF
#!/bin/sh
# Runs "\$@" with the private passwd/group, a private /var/spool and
# /var/lib (OpenSMTPD's compiled-in queue and chroot), and OpenSMTPD's
# helpers at their compiled-in path, all in a mount namespace of its own:
# it re-executes itself under unshare -m first, so the mounts can never
# reach the rest of the machine.
set -e
if [ "\$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ]; then
    exec unshare -m --propagation private "\$0" "\$@"
fi
mount --bind $work/passwd /etc/passwd
mount --bind $work/group /etc/group
mount -t tmpfs none /var/spool
mount -t tmpfs none /var/lib
mkdir -p /var/lib/opensmtpd/empty
mount --bind $work/root/usr/libexec /usr/libexec
export LD_LIBRARY_PATH=$lib
exec "\$@"
EOF
chmod +x ns.sh
cat >exim-path.sh <<EOF
#!/bin/sh
export LD_LIBRARY_PATH=$lib
exec $work/root/usr/sbin/exim4 "\$@"
EOF
chmod +x exim-path.sh

# --- letterbox ---------------------------------------------------------------
lmtp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p data
for u in alice bob carol; do printf 'pw\n' | "$bin" user add "$u" --data data --password-stdin >/dev/null; done
start_letterbox() {
    "$bin" serve --data data --imap off --imaps off --pop3 off --pop3s off \
        --lmtp "127.0.0.1:$lmtp_port" --run-as nobody >>letterbox.log 2>&1 </dev/null &
    letterbox_pid=$!
    pids+=("$letterbox_pid")
    for _ in $(seq 1 100); do
        grep -q "LMTP listening on 127.0.0.1:$lmtp_port" letterbox.log 2>/dev/null && return 0
        sleep 0.1
    done
    die "letterbox did not start"
}
stop_letterbox() { kill "$letterbox_pid"; wait "$letterbox_pid" 2>/dev/null || true; }
start_letterbox

# --- Exim ----------------------------------------------------------------------
step "Exim $(./ns.sh root/usr/sbin/exim4 -bV 2>/dev/null | sed -n 's/^Exim version \([^ ]*\).*/\1/p')"
mkdir -p exim-spool exim-log
touch exim-log/mainlog exim-log/stderr
chmod 0777 exim-spool exim-log
chmod 0666 exim-log/mainlog
printf 'alice\nbob\n' >letterbox-users
python3 - "$repo/configs/exim-lmtp.snippet" "$work" "$lmtp_port" <<'PY'
import sys
snippet, work, port = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
router = snippet[snippet.index("### router"):snippet.index("### transport")]
transport = snippet[snippet.index("### transport"):]
router = router.replace("/etc/exim4/letterbox-users", f"{work}/letterbox-users")
transport = transport.replace("port = 24\n", f"port = {port}\n").replace("user = Debian-exim", "user = nobody")
open(f"{work}/exim.conf", "w").write(f"""exim_path = {work}/exim-path.sh
keep_environment = LD_LIBRARY_PATH
primary_hostname = mx.example.org
domainlist local_domains = example.org
exim_user = nobody
exim_group = nogroup
spool_directory = {work}/exim-spool
log_file_path = {work}/exim-log/%slog
begin routers
{router}
begin transports
{transport}
begin retry
* * F,2h,15m; G,16h,1h,1.5; F,4d,6h
""")
PY
# Run with -C, Exim's delivery processes lose their privilege and log to
# stderr instead of mainlog: keep both.
# The checks below read the logs, not exit codes (a bounce is exit 0 too).
exim() { ./ns.sh "$work/root/usr/sbin/exim4" -C "$work/exim.conf" "$@" 2>>exim-log/stderr || true; }
exim_log() { cat exim-log/mainlog exim-log/stderr; }
./ns.sh "$work/root/usr/sbin/exim4" -C "$work/exim.conf" -bV >/dev/null || die "exim -bV rejects the config"
for rcpt in alice@example.org alice+Archive@example.org nosuch@example.org; do
    printf 'From: bob@example.org\nSubject: exim %s\n\nhi\n' "$rcpt" | exim -odf -oi -f bob@example.org "$rcpt"
done
exim_log | grep -q '=> alice@example.org .*delivered to INBOX' || die "Exim: alice not delivered"
exim_log | grep -q '<alice+Archive@example.org> .*delivered to Archive' || die "Exim: alice+Archive not in Archive"
exim_log | grep -q 'nosuch@example.org: Unrouteable address' || die "Exim: unknown user not unrouteable"
stop_letterbox
printf 'From: bob@example.org\nSubject: exim deferred\n\nhi\n' | exim -odf -oi -f bob@example.org alice@example.org
exim_log | grep -q '== alice@example.org .*defer' || die "Exim: no deferral while letterbox is down"
start_letterbox
exim -qff
exim_log | grep -q 'alice@example.org> delivered to INBOX as UID 2' || die "Exim: the deferred message was not delivered by -qff"
exim_log | grep -E '=>|==|\*\*' | sed 's/^/  exim: /'

# --- OpenSMTPD -----------------------------------------------------------------
step "OpenSMTPD"
smtp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'alice@example.org letterbox\nbob@example.org letterbox\n' >smtpd-letterbox-users
echo 'root: root' >aliases
python3 - "$repo/configs/opensmtpd.snippet" "$work" "$lmtp_port" "$smtp_port" <<'PY'
import sys
snippet, work, lmtp, smtp = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4]
snippet = snippet.replace("/etc/smtpd-letterbox-users", f"{work}/smtpd-letterbox-users")
snippet = snippet.replace('"127.0.0.1:24"', f'"127.0.0.1:{lmtp}"')
# Both variants on: the local one uncommented.
snippet = snippet.replace('#action "letterbox_local"', 'action "letterbox_local"')
snippet = snippet.replace('#match for local action "letterbox_local"', 'match for local action "letterbox_local"')
# Debian 12's default /etc/smtpd.conf follows the merged lines.
open(f"{work}/smtpd.conf", "w").write(f"""table aliases file:{work}/aliases
listen on 127.0.0.1 port {smtp}
{snippet}
action "local" maildir alias <aliases>
action "relay" relay
match for local action "local"
match from local for any action "relay"
""")
PY
./ns.sh root/usr/sbin/smtpd -n -f "$work/smtpd.conf" || die "smtpd -n rejects the config"
./ns.sh root/usr/sbin/smtpd -d -v -f "$work/smtpd.conf" >smtpd.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $smtp_port), 1)" 2>/dev/null && break
    sleep 0.1
done
python3 - "$smtp_port" <<'PY' | sed 's/^/  smtp: /'
import smtplib, sys
for to in ["alice@example.org", "alice+Archive@example.org", "carol+Archive@localhost", "nosuch@example.org"]:
    msg = f"From: <bob@example.org>\r\nTo: <{to}>\r\nSubject: smtpd {to}\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
        try:
            s.sendmail("bob@example.org", [to], msg)
            print(to, "accepted")
        except smtplib.SMTPRecipientsRefused as e:
            print(to, "refused", e.recipients[to])
PY
for _ in $(seq 1 100); do
    [ "$(grep -c 'mda delivery' smtpd.log)" -ge 3 ] && break
    sleep 0.1
done
grep -E 'mda delivery|failed-command' smtpd.log | sed 's/^/  smtpd: /'
grep -q 'rcpt=<alice+Archive@example.org> .*result=Ok' smtpd.log || die "OpenSMTPD: alice+Archive not delivered"
grep -q 'rcpt=<carol+Archive@localhost> .*result=Ok' smtpd.log || die "OpenSMTPD: carol+Archive not delivered"
grep -q 'failed-command command="rcpt TO:<nosuch@example.org>" result="5' smtpd.log || die "OpenSMTPD: unknown user not refused at SMTP"

stop_letterbox
for u in alice carol; do "$bin" export "$u" "export-$u" --data data >/dev/null; done
find export-* -type f | sed 's,/cur/.*,,' | sort | uniq -c | sed 's/^/  stored: /'
[ -d export-alice/Archive/cur ] && [ -d export-carol/Archive/cur ] || die "+folder mail is not in Archive"
step "PASS"
