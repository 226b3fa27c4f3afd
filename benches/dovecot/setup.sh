#!/usr/bin/env bash
# Start a private Dovecot 2.3 (Debian's dovecot-core, -imapd, -pop3d, -lmtpd)
# as the baseline letterbox is benchmarked against.
#
#   benches/dovecot/setup.sh DIR        (stop it with benches/dovecot/stop.sh DIR)
#
# Everything lives under DIR: config, base_dir (sockets, pid), state_dir, log,
# self-signed certificate, users file and Maildirs (DIR/mail/<user>). It
# listens only on 127.0.0.1, never touches /etc/dovecot or a system Dovecot,
# and is re-runnable (a running instance in DIR is stopped first; the users
# file and config are rewritten, mail is kept).
#
# Environment (defaults in brackets):
#   LMTP_PORT [24024] IMAP_PORT [24143] POP3_PORT [24110]
#   IMAPS_PORT [24993] POP3S_PORT [24995]      (the names benches/load.rs sets)
#   BENCH_USERS [50]            users bench1..benchN, all with password "benchpass"
#   BENCH_PASS_SCHEME [argon2id]
#       argon2id  {ARGON2ID} with letterbox's own parameters (m=19456 KiB, t=2,
#                 p=1: the argon2 crate's defaults, which `letterbox user add`
#                 uses), so a login costs the same on both servers. Dovecot
#                 has no auth cache here (auth_cache_size = 0, its default).
#       doveadm   {ARGON2ID} from `doveadm pw -s ARGON2ID` (libsodium's
#                 defaults, m=65536 KiB, t=3: slower logins than letterbox)
#       plain     {PLAIN}: no hashing cost at all, measures protocol work only
#   BENCH_LOGIN_MODE [security]
#       security     Dovecot's default: one login process per connection
#       performance  long-lived login processes (service_count = 0)
#
# Durability is Dovecot's default, mail_fsync = optimized: each delivered
# message file is fsync'd before LMTP answers 250, as letterbox commits (and
# fsyncs) before its 250.
#
# As root, mail is owned by a system user "letterbox-bench" that this script
# creates if needed; Dovecot's own dovecot/dovenull users run the internal and
# login processes, as in a packaged install. As another user, every process
# runs as that user (no chroot for login processes).
#
# Writes DIR/bench.env (ports, users, password) for load generators to source.
set -euo pipefail

die() { echo "dovecot-bench setup: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
dir=$(cd "$1" && pwd)
case "$dir" in *[[:space:]\"\'\\]*) die "DIR must not contain spaces or quotes: '$dir'" ;; esac

lmtp_port=${LMTP_PORT:-24024}
imap_port=${IMAP_PORT:-24143}
pop3_port=${POP3_PORT:-24110}
imaps_port=${IMAPS_PORT:-24993}
pop3s_port=${POP3S_PORT:-24995}
nusers=${BENCH_USERS:-50}
scheme=${BENCH_PASS_SCHEME:-argon2id}
login_mode=${BENCH_LOGIN_MODE:-security}
password=benchpass

for tool in dovecot doveadm doveconf openssl python3; do
    command -v "$tool" >/dev/null ||
        die "$tool not found; install: apt-get install dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd openssl python3"
done
for proto in imap pop3 lmtp; do
    [ -x "/usr/lib/dovecot/$proto" ] || die "/usr/lib/dovecot/$proto missing; install dovecot-${proto}d"
done

script_dir=$(cd "$(dirname "$0")" && pwd)
# Stop an instance this DIR already runs (no-op if none).
"$script_dir/stop.sh" "$dir" >/dev/null 2>&1 || true

# port_busy PORT: something accepts on 127.0.0.1:PORT.
port_busy() {
    python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex(("127.0.0.1",int(sys.argv[1])))==0 else 1)' "$1"
}
for p in "$lmtp_port" "$imap_port" "$pop3_port" "$imaps_port" "$pop3s_port"; do
    ! port_busy "$p" || die "127.0.0.1:$p is already in use (set LMTP_PORT, IMAP_PORT, POP3_PORT, IMAPS_PORT, POP3S_PORT)"
done

# --- who runs what ---------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
    mail_user=letterbox-bench
    if ! id "$mail_user" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir "$dir/mail" \
            --shell /usr/sbin/nologin "$mail_user"
    fi
    internal_user=dovecot
    internal_group=dovecot
    login_user=dovenull
    for u in "$internal_user" "$login_user"; do
        id "$u" >/dev/null 2>&1 || die "system user $u missing (it comes with dovecot-core)"
    done
    login_chroot=login
else
    mail_user=$(id -un)
    internal_user=$mail_user
    internal_group=$(id -gn)
    login_user=$mail_user
    login_chroot=   # chroot needs root
fi
mail_uid=$(id -u "$mail_user")
mail_gid=$(id -g "$mail_user")

# --- directories -------------------------------------------------------------
mkdir -p "$dir/run" "$dir/state" "$dir/log" "$dir/ssl" "$dir/mail"
# Login and internal processes run as other users and must reach base_dir.
chmod 0755 "$dir" "$dir/run"
chmod 0700 "$dir/ssl"
chown "$mail_uid:$mail_gid" "$dir/mail"
chmod 0700 "$dir/mail"
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
    runuser -u "$login_user" -- test -x "$dir/run" ||
        die "$dir is not reachable by user $login_user: a parent directory is not world-traversable (chmod o+x it, or use a DIR under /tmp or /srv)"
fi

# --- TLS: self-signed, made once -------------------------------------------------
if [ ! -s "$dir/ssl/cert.pem" ] || [ ! -s "$dir/ssl/key.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/ssl/key.pem" -out "$dir/ssl/cert.pem" 2>/dev/null ||
        die "openssl could not make a self-signed certificate"
    chmod 0600 "$dir/ssl/key.pem"
fi

# --- users -------------------------------------------------------------------------
case "$scheme" in
    argon2id)
        # "benchpass" hashed with the argon2 crate's default parameters
        # (argon2id, v=19, m=19456, t=2, p=1, 32-byte output) and the fixed
        # salt "letterbox-bench!"; Python's argon2-cffi gives the same string:
        #   PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1,
        #                  hash_len=32, type=Type.ID).hash("benchpass", salt=b"letterbox-bench!")
        # Checked below with `doveadm pw -t`.
        # shellcheck disable=SC2016  # literal $ in the hash
        hash='{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$bGV0dGVyYm94LWJlbmNoIQ$/n/5RWDMTeXFX+yFCWE2Kw4Hd0n2GQdWJVwHrqjV0dA' ;;
    doveadm) hash=$(doveadm pw -s ARGON2ID -p "$password") ;;
    plain)   hash="{PLAIN}$password" ;;
    *) die "BENCH_PASS_SCHEME must be argon2id, doveadm or plain (got '$scheme')" ;;
esac
doveadm pw -t "$hash" -p "$password" >/dev/null 2>&1 || die "doveadm cannot verify the $scheme hash"
users_tmp=$dir/users.tmp
: >"$users_tmp"
for i in $(seq 1 "$nusers"); do
    printf 'bench%d:%s\n' "$i" "$hash" >>"$users_tmp"
done
mv "$users_tmp" "$dir/users"
# Read by the auth process, which runs as root (master) / internal user.
chmod 0644 "$dir/users"

# --- dovecot.conf ------------------------------------------------------------------
if [ "$login_mode" = performance ]; then
    login_tuning='  service_count = 0
  process_min_avail = 2'
elif [ "$login_mode" = security ]; then
    login_tuning='  service_count = 1'
else
    die "BENCH_LOGIN_MODE must be security or performance (got '$login_mode')"
fi

cat >"$dir/dovecot.conf" <<CONF
# Generated by benches/dovecot/setup.sh; rewritten on every run.
instance_name = letterbox-bench
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/log/dovecot.log
info_log_path = $dir/log/dovecot.log
debug_log_path = $dir/log/dovecot.log

protocols = imap pop3 lmtp
listen = 127.0.0.1
default_internal_user = $internal_user
default_internal_group = $internal_group
default_login_user = $login_user
# A load test opens many connections from one address: Dovecot's defaults
# (100 processes per service, 10 connections per user and IP) would refuse them.
default_process_limit = 1000
default_client_limit = 5000
protocol imap {
  mail_max_userip_connections = 1000
}
protocol pop3 {
  mail_max_userip_connections = 1000
}

ssl = yes
ssl_cert = <$dir/ssl/cert.pem
ssl_key = <$dir/ssl/key.pem
auth_mechanisms = plain login
disable_plaintext_auth = no
# "bench1@localhost" and "bench1" are the same user (LMTP RCPT from an MTA
# carries a domain).
auth_username_format = %Ln
auth_cache_size = 0

passdb {
  driver = passwd-file
  args = $dir/users
}
userdb {
  driver = static
  args = uid=$mail_uid gid=$mail_gid home=$dir/mail/%u
}
first_valid_uid = $mail_uid
last_valid_uid = $mail_uid
first_valid_gid = $mail_gid
last_valid_gid = $mail_gid
mail_uid = $mail_uid
mail_gid = $mail_gid
mail_location = maildir:$dir/mail/%u
# Stated for clarity: this is Dovecot's default.
mail_fsync = optimized

service imap-login {
  chroot = $login_chroot
$login_tuning
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
}
service pop3-login {
  chroot = $login_chroot
$login_tuning
  inet_listener pop3 {
    address = 127.0.0.1
    port = $pop3_port
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $pop3s_port
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
CONF
if [ -z "$login_chroot" ]; then
    # Not root: no service may chroot (Dovecot's defaults chroot these).
    for svc in anvil ipc aggregator old-stats director imap-urlauth-login submission-login; do
        printf 'service %s {\n  chroot =\n}\n' "$svc" >>"$dir/dovecot.conf"
    done
fi
chmod 0644 "$dir/dovecot.conf"

doveconf -c "$dir/dovecot.conf" -n >/dev/null || die "doveconf rejected $dir/dovecot.conf (see above)"

# --- start and wait for every port ------------------------------------------------
# Room for default_client_limit connections (Dovecot warns otherwise); the
# hard limit is as far as a non-root user may go.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
dovecot -c "$dir/dovecot.conf" || die "dovecot did not start; see $dir/log/dovecot.log"

# ready PORT GREETING: a connection gets GREETING (empty: TCP accept is enough,
# for the TLS ports).
ready() {
    python3 - "$1" "$2" <<'PY' 2>/dev/null
import socket, sys
port, want = int(sys.argv[1]), sys.argv[2].encode()
s = socket.create_connection(("127.0.0.1", port), timeout=2)
if want:
    s.settimeout(5)
    ok = s.recv(256).startswith(want)
else:
    ok = True
s.close()
sys.exit(0 if ok else 1)
PY
}
deadline=$((SECONDS + 30))
for check in "$lmtp_port:220" "$imap_port:* OK" "$pop3_port:+OK" "$imaps_port:" "$pop3s_port:"; do
    port=${check%%:*}
    greeting=${check#*:}
    until ready "$port" "$greeting"; do
        [ "$SECONDS" -lt "$deadline" ] || {
            tail -n 20 "$dir/log/dovecot.log" >&2 || true
            die "127.0.0.1:$port did not become ready within 30s (log: $dir/log/dovecot.log)"
        }
        sleep 0.2
    done
done

cat >"$dir/bench.env" <<ENV
# Written by benches/dovecot/setup.sh
BENCH_SERVER=dovecot
LMTP_PORT=$lmtp_port
IMAP_PORT=$imap_port
POP3_PORT=$pop3_port
IMAPS_PORT=$imaps_port
POP3S_PORT=$pop3s_port
BENCH_USERS=$nusers
BENCH_PASSWORD=$password
BENCH_PASS_SCHEME=$scheme
BENCH_CA_CERT=$dir/ssl/cert.pem
ENV

echo "dovecot $(dovecot --version) running from $dir/dovecot.conf (pid $(cat "$dir/run/master.pid"))"
echo "  LMTP  127.0.0.1:$lmtp_port"
echo "  IMAP  127.0.0.1:$imap_port   IMAPS 127.0.0.1:$imaps_port"
echo "  POP3  127.0.0.1:$pop3_port   POP3S 127.0.0.1:$pop3s_port"
echo "  users bench1..bench$nusers, password $password ($scheme), login mode $login_mode"
echo "  log   $dir/log/dovecot.log    stop: benches/dovecot/stop.sh $dir"
