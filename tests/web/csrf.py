"""CSRF and user separation over plain HTTP (tests/web_browser.rs::csrf_and_users):
a POST without the session's token is refused, and one user's cookie never
reads another user's mail, whatever ids it asks for."""

import json
import os
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ["WEB_BASE"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(method, path, cookie=None, csrf=None, form=None):
    data = urllib.parse.urlencode(form or {}).encode() if method == "POST" else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if form is not None or method == "POST":
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if cookie:
        req.add_header("Cookie", cookie)
    if csrf is not None:
        req.add_header("X-CSRF-Token", csrf)
    try:
        with opener.open(req, timeout=20) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def login(user):
    status, headers, body = call("POST", "/login", form={"user": user, "password": "pw-" + user})
    assert status == 200, (status, body)
    cookie = headers["Set-Cookie"].split(";")[0]
    assert cookie.startswith("lb_session="), headers["Set-Cookie"]
    attrs = headers["Set-Cookie"].lower()
    assert "httponly" in attrs and "samesite=strict" in attrs, headers["Set-Cookie"]
    return cookie, json.loads(body)["csrf"]


def folders(cookie):
    status, _, body = call("GET", "/api/folders", cookie)
    assert status == 200, (status, body)
    return {f["name"]: f["id"] for f in json.loads(body)["folders"]}


alice, alice_csrf = login("alice")
bob, bob_csrf = login("bob")
assert alice_csrf != bob_csrf

a_inbox = folders(alice)["INBOX"]
status, _, body = call("GET", f"/api/folders/{a_inbox}/messages", alice)
assert status == 200, (status, body)
a_msgs = json.loads(body)["messages"]
assert len(a_msgs) == 1 and a_msgs[0]["subject"] == "For Alice only", a_msgs
a_uid = a_msgs[0]["uid"]

# CSRF: no token, a wrong token, another session's token: all refused, nothing changes.
for token in [None, "", "not-the-token", bob_csrf]:
    status, _, body = call("POST", "/api/folders/create", alice, token, {"name": "Made by CSRF"})
    assert status == 403, f"token {token!r}: {status} {body!r}"
    status, _, body = call("POST", f"/api/folders/{a_inbox}/flags", alice, token,
                           {"uids": str(a_uid), "add": "\\Flagged"})
    assert status == 403, f"token {token!r}: {status} {body!r}"
status, _, body = call("POST", "/logout", alice, None)
assert status == 403, f"logout without the token: {status} {body!r}"
assert "Made by CSRF" not in folders(alice)
status, _, body = call("GET", f"/api/folders/{a_inbox}/messages", alice)
assert not json.loads(body)["messages"][0]["flagged"]
# With the token it works (so the refusals above were about the token).
status, _, body = call("POST", "/api/folders/create", alice, alice_csrf, {"name": "Made with the token"})
assert status == 200, (status, body)
assert "Made with the token" in folders(alice)

# Bob's cookie against Alice's ids: 404, exactly like ids that do not exist.
for path in [f"/api/folders/{a_inbox}/messages", f"/api/folders/{a_inbox}/messages/{a_uid}",
             f"/api/folders/{a_inbox}/messages/{a_uid}/source",
             f"/api/folders/{a_inbox}/messages/{a_uid}/html",
             f"/api/folders/{a_inbox}/messages/{a_uid}/part/1"]:
    status, _, body = call("GET", path, bob)
    assert status == 404, f"bob GET {path}: {status} {body!r}"
    assert b"For Alice only" not in body and b"secret" not in body
for path, form in [(f"/api/folders/{a_inbox}/flags", {"uids": str(a_uid), "add": "\\Flagged"}),
                   (f"/api/folders/{a_inbox}/delete", {"uids": str(a_uid)}),
                   (f"/api/folders/{a_inbox}/rename", {"name": "Stolen"}),
                   (f"/api/folders/{a_inbox}/move", {"uids": str(a_uid), "to": str(folders(bob)["INBOX"])})]:
    status, _, body = call("POST", path, bob, bob_csrf, form)
    assert status == 404, f"bob POST {path}: {status} {body!r}"
status, _, body = call("GET", f"/api/folders/{a_inbox}/messages/{a_uid}", alice)
assert status == 200 and b"For Alice only" in body, (status, body)
status, _, body = call("GET", "/api/folders/99999/messages", alice)
assert status == 404, (status, body)

# No cookie, a forged cookie: 401.
assert call("GET", "/api/folders")[0] == 401
assert call("GET", "/api/folders", "lb_session=forged")[0] == 401
assert call("GET", "/session", "lb_session=forged")[0] == 401

# Logout ends the session for good.
status, _, _ = call("POST", "/logout", alice, alice_csrf)
assert status == 204, status
assert call("GET", "/api/folders", alice)[0] == 401
assert call("GET", "/session", alice)[0] == 401
assert call("GET", "/session", bob)[0] == 200
print("OK")
