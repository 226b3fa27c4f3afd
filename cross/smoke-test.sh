#!/usr/bin/env bash
# End-to-end smoke test of a letterbox binary, normally a cross-built one
# under qemu-user:
#
#   cross/smoke-test.sh PATH_TO_BINARY
#
# The runner is chosen from the binary's ELF header (`file`):
#   aarch64 static (musl)  -> qemu-aarch64
#   aarch64 dynamic (gnu)  -> qemu-aarch64 -L /usr/aarch64-linux-gnu
#   32-bit ARM static      -> qemu-arm
#   32-bit ARM dynamic     -> qemu-arm -L /usr/arm-linux-gnueabihf
#   the host's own arch    -> run directly (so this also tests target/debug/letterbox)
# Override with SMOKE_RUNNER="qemu-aarch64 -cpu cortex-a72" (or SMOKE_RUNNER=""
# to run directly, e.g. on a Pi).
# Other knobs: SMOKE_READY_TIMEOUT (s, default 60) for the server to accept
# LMTP, SMOKE_CMD_TIMEOUT (s, default 180) for each one-shot command (argon2
# under qemu is slow), SMOKE_KEEP=1 to keep the temp dir even on success.
#
# The letterbox CLI this relies on (DESIGN.md §5 plus `export`):
#   letterbox user add alice --data D --password-stdin     (password on stdin)
#   letterbox serve --data D --unprivileged-ports
#         --imap off --imaps off --pop3 off --pop3s off --https off
#         --lmtp 127.0.0.1:PORT [--run-as nobody]            (--run-as only as root)
#     - accepts LMTP on PORT with a 220 greeting once ready;
#     - accepts RCPT TO:<alice@localhost> for local user alice (the form an MTA
#       such as Postfix sends) and answers 250 after DATA once the message is durable;
#     - exits with status 0 on SIGTERM (clean shutdown).
#   letterbox deliver --lmtp 127.0.0.1:PORT alice < message   (exit 0 = delivered)
#   letterbox export alice OUTDIR --data D
#     - writes a Maildir tree: OUTDIR/INBOX/cur/<one file per message>, each the
#       raw RFC 5322 bytes (Return-Path:/Received: may be prepended).
#
# Nothing here needs root; as root the server is told to drop to `nobody`.
# Everything lives in one mktemp dir; the server is always killed on exit.
set -euo pipefail

die() { echo "smoke-test: FAIL: $*" >&2; exit 1; }
step() { echo "smoke-test: $*"; }

[ $# -eq 1 ] || { echo "usage: $0 PATH_TO_LETTERBOX_BINARY" >&2; exit 2; }
bin=$1
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    die "'$bin' is not an executable file (build it with cross/build.sh)"
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
command -v python3 >/dev/null || die "python3 is needed (apt-get install python3)"

ready_timeout=${SMOKE_READY_TIMEOUT:-60}
cmd_timeout=${SMOKE_CMD_TIMEOUT:-180}

# --- choose how to run the binary -------------------------------------------
if [ -n "${SMOKE_RUNNER+set}" ]; then
    read -r -a runner <<<"$SMOKE_RUNNER"
else
    command -v file >/dev/null || die "'file' is needed to pick a runner (apt-get install file), or set SMOKE_RUNNER"
    desc=$(file -L "$bin")
    host=$(uname -m)
    case "$desc" in
        *"ARM aarch64"*)
            if [ "$host" = aarch64 ]; then runner=()
            elif grep -Eq 'statically linked|static-pie linked' <<<"$desc"; then runner=(qemu-aarch64)
            else runner=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
            fi ;;
        *"32-bit"*"ARM"*)
            # A static binary gets no sysroot, so nothing of Debian's armhf
            # glibc can leak in and hide a dynamic dependency.
            if [ "$host" = armv7l ] || [ "$host" = armv8l ]; then runner=()
            elif grep -Eq 'statically linked|static-pie linked' <<<"$desc"; then runner=(qemu-arm)
            else runner=(qemu-arm -L /usr/arm-linux-gnueabihf)
            fi ;;
        *x86-64*)
            [ "$host" = x86_64 ] || die "x86-64 binary on a $host host; set SMOKE_RUNNER"
            runner=() ;;
        *) die "cannot tell how to run '$bin' ($desc); set SMOKE_RUNNER" ;;
    esac
fi
if [ ${#runner[@]} -gt 0 ]; then
    command -v "${runner[0]}" >/dev/null || die "${runner[0]} not found (apt-get install qemu-user)"
fi
step "binary $bin, runner: ${runner[*]:-(native)}"

# --- scratch space and cleanup ----------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/letterbox-smoke.XXXXXX")
data=$work/data
server_pid=
cleanup() {
    local rc=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ]; then
        if [ -s "$work/server.log" ]; then
            echo "smoke-test: last lines of the server log ($work/server.log):" >&2
            tail -n 40 "$work/server.log" >&2
        fi
        echo "smoke-test: kept $work for inspection" >&2
    elif [ "${SMOKE_KEEP:-0}" = 1 ]; then
        echo "smoke-test: kept $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$data"
run_as=()
if [ "$(id -u)" = 0 ]; then
    # The server drops to `nobody` after binding; it must still be able to
    # reach DATA, so the whole path is world-traversable.
    id nobody >/dev/null 2>&1 || die "running as root but there is no 'nobody' user for --run-as"
    chmod 0755 "$work" "$data"
    run_as=(--run-as nobody)
fi

token=$(date +%s)-$$-$RANDOM
token_lmtp=smoke-lmtp-$token
token_cli=smoke-deliver-$token

# --- 1. create a user --------------------------------------------------------
step "1/4 user add alice"
printf 'secret\n' | timeout "$cmd_timeout" "${runner[@]+"${runner[@]}"}" "$bin" \
    user add alice --data "$data" --password-stdin ||
    die "'letterbox user add alice --data $data --password-stdin' exited with status $?"

# --- 2. start the server -----------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
step "2/4 serve, LMTP on 127.0.0.1:$port"
RUST_LOG=${RUST_LOG:-info} "${runner[@]+"${runner[@]}"}" "$bin" serve --data "$data" \
    --unprivileged-ports --imap off --imaps off --pop3 off --pop3s off --https off \
    --lmtp "127.0.0.1:$port" "${run_as[@]+"${run_as[@]}"}" \
    >"$work/server.log" 2>&1 </dev/null &
server_pid=$!

# Ready = a TCP connect that gets a 220 greeting (not just an accept: the
# listener may be bound before the store is open).
lmtp_greets() {
    python3 - "$port" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.settimeout(10)
line = s.recv(512)
s.close()
sys.exit(0 if line.startswith(b"220") else 1)
PY
}
deadline=$((SECONDS + ready_timeout))
until lmtp_greets; do
    kill -0 "$server_pid" 2>/dev/null || { wait "$server_pid" && rc=0 || rc=$?; server_pid=; die "server exited (status $rc) before accepting LMTP"; }
    [ "$SECONDS" -lt "$deadline" ] || die "server did not greet on LMTP 127.0.0.1:$port within ${ready_timeout}s"
    sleep 0.5
done
step "    server is up (pid $server_pid) after ~$((SECONDS + ready_timeout - deadline))s"

# --- 3. deliver two messages -------------------------------------------------
step "3/4 deliver over LMTP with python smtplib (RCPT alice@localhost)"
python3 - "$port" "alice@localhost" "$token_lmtp" <<'PY' || die "LMTP delivery with smtplib failed (see above)"
import smtplib, sys
from email.utils import formatdate
port, rcpt, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
msg = (
    "From: Smoke Test <smoke@example.org>\r\n"
    f"To: <{rcpt}>\r\n"
    "Subject: letterbox smoke test via LMTP\r\n"
    f"Date: {formatdate(localtime=False)}\r\n"
    f"Message-ID: <{token}@smoke.example.org>\r\n"
    "\r\n"
    f"body-token: {token}\r\n"
).encode()
def check(what, reply, want=250):
    code, text = reply
    if code != want:
        print(f"smoke-test: {what} answered {code} {text!r}, expected {want}", file=sys.stderr)
        sys.exit(1)
with smtplib.LMTP("127.0.0.1", port, timeout=60) as s:
    check("LHLO", s.ehlo())          # smtplib.LMTP sends LHLO here
    check("MAIL FROM", s.mail("smoke@example.org"))
    check(f"RCPT TO:<{rcpt}>", s.rcpt(rcpt))
    check("DATA (end of message)", s.data(msg))
    print(f"smoke-test:     LMTP DATA reply 250 for {rcpt}")
PY

step "3/4 deliver with 'letterbox deliver --lmtp 127.0.0.1:$port alice'"
# LF line endings on purpose: that is what an MTA's pipe (mailbox_command,
# fetchmail mda) hands over.
printf 'From: Smoke Test <smoke@example.org>\nTo: alice\nSubject: letterbox smoke test via deliver\nMessage-ID: <%s@smoke.example.org>\n\nbody-token: %s\n' \
    "$token_cli" "$token_cli" >"$work/msg-cli.eml"
timeout "$cmd_timeout" "${runner[@]+"${runner[@]}"}" "$bin" deliver --lmtp "127.0.0.1:$port" alice \
    <"$work/msg-cli.eml" || die "'letterbox deliver --lmtp 127.0.0.1:$port alice' exited with status $?"

# --- 4. stop, export, check --------------------------------------------------
step "4/4 SIGTERM the server and wait (up to 30s)"
kill -TERM "$server_pid"
# bash's `wait` has no timeout, so poll: bash reaps the exited child itself,
# after which kill -0 fails and `wait` returns the saved exit status.
deadline=$((SECONDS + 30))
while kill -0 "$server_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
done
kill -KILL "$server_pid" 2>/dev/null || true
wait "$server_pid" && status=0 || status=$?
server_pid=
[ "$status" -eq 0 ] || die "server exited with status $status after SIGTERM (expected 0, a clean shutdown; 137 means it ignored SIGTERM for 30s and was killed)"

step "4/4 export alice's mail to a Maildir"
out=$work/export
timeout "$cmd_timeout" "${runner[@]+"${runner[@]}"}" "$bin" export alice "$out" --data "$data" ||
    die "'letterbox export alice $out --data $data' exited with status $?"
cur=$out/INBOX/cur
[ -d "$cur" ] || die "export wrote no $cur directory (found: $(cd "$out" 2>/dev/null && find . -maxdepth 3 | head -20 | tr '\n' ' '))"
n=$(find "$cur" -maxdepth 1 -type f | wc -l)
[ "$n" -ge 2 ] || die "expected at least 2 messages in $cur, found $n"
for t in "$token_lmtp" "$token_cli"; do
    hits=$(grep -rlF -- "body-token: $t" "$cur" | wc -l)
    [ "$hits" -eq 1 ] || die "body token '$t' is in $hits files of $cur, expected exactly 1"
done

echo "smoke-test: PASS ($n messages exported, both deliveries found)"
