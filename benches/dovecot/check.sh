#!/usr/bin/env bash
# Round-trip check of a running benchmark Dovecot (benches/dovecot/setup.sh DIR):
# deliver one message to bench1 over LMTP, then read it back over POP3, POP3S,
# IMAP and IMAPS (LOGIN with the bench password). Leaves the message in place.
#   benches/dovecot/check.sh DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
env_file=$1/bench.env
[ -s "$env_file" ] || { echo "dovecot-bench check: $env_file missing: run setup.sh $1 first" >&2; exit 1; }

python3 - "$env_file" <<'PY'
import imaplib, poplib, smtplib, ssl, sys, time
env = dict(l.strip().split("=", 1) for l in open(sys.argv[1]) if "=" in l and not l.startswith("#"))
port = lambda k: int(env["%s_PORT" % k])
user, password = "bench1", env["BENCH_PASSWORD"]
token = "dovecot-check-%d" % time.time_ns()
tls = ssl.create_default_context(cafile=env["BENCH_CA_CERT"])

msg = ("From: <check@example.org>\r\nTo: <%s@localhost>\r\nSubject: %s\r\n"
       "Message-ID: <%s@example.org>\r\n\r\nbody-token: %s\r\n" % (user, token, token, token))
with smtplib.LMTP("127.0.0.1", port("LMTP"), timeout=30) as s:
    s.ehlo()
    refused = s.sendmail("check@example.org", ["%s@localhost" % user], msg)
    assert not refused, refused
print("LMTP   250 for %s@localhost" % user)

def pop(conn, name):
    conn.user(user); conn.pass_(password)
    count, _ = conn.stat()
    found = any(token.encode() in b"\n".join(conn.retr(i)[1]) for i in range(1, count + 1))
    conn.quit()
    assert found, "%s: token not found in %d messages" % (name, count)
    print("%-6s found it among %d messages" % (name, count))
pop(poplib.POP3("127.0.0.1", port("POP3"), timeout=30), "POP3")
pop(poplib.POP3_SSL("127.0.0.1", port("POP3S"), context=tls, timeout=30), "POP3S")

def imap(conn, name):
    conn.login(user, password)
    conn.select("INBOX", readonly=True)
    typ, data = conn.search(None, "HEADER", "Message-ID", "<%s@example.org>" % token)
    nums = data[0].split()
    assert typ == "OK" and len(nums) == 1, (typ, data)
    typ, data = conn.fetch(nums[0], "(BODY.PEEK[])")
    assert token.encode() in data[0][1], data
    conn.logout()
    print("%-6s SEARCH + FETCH ok" % name)
imap(imaplib.IMAP4("127.0.0.1", port("IMAP"), timeout=30), "IMAP")
imap(imaplib.IMAP4_SSL("127.0.0.1", port("IMAPS"), ssl_context=tls, timeout=30), "IMAPS")
print("dovecot-bench check: PASS")
PY
