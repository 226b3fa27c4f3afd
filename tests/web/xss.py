"""Hostile mail in a real browser (tests/web_browser.rs::hostile_mail): no
script of a message runs, nothing of the app is touched, and nothing is
fetched from a "remote" host (a local HTTP server that counts every request)
until the user asks for remote content."""

import http.server
import re
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lb import *  # noqa: E402,F403

hits = []


class Remote(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
                         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

    do_POST = do_GET

    def log_message(self, *args):
        pass


remote = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Remote)
threading.Thread(target=remote.serve_forever, daemon=True).start()
R = f"http://127.0.0.1:{remote.server_address[1]}"
PWN = "window.top.pwned=(window.top.pwned||[]).concat"

HTML = f"""<!doctype html><html><head>
<meta http-equiv="refresh" content="0;url={R}/meta-refresh">
<base href="{R}/base/">
<link rel="stylesheet" href="{R}/link.css">
<style>body {{ background: url('{R}/css-style.png'); }} @import url('{R}/css-import.css');</style>
<script>{PWN}(['script']); document.title='pwned'; new Image().src='{R}/script';</script>
</head><body>
<p id="hello">Hello from a hostile sender.</p>
<img src="x" onerror="{PWN}(['img-onerror']); new Image().src='{R}/onerror'">
<img src="{R}/tracker.gif" alt="tracker">
<img src="relative-to-base.png" alt="base">
<svg onload="{PWN}(['svg'])"><circle r="5"/></svg>
<a id="js" href="javascript:{PWN}(['javascript-link'])">a javascript: link</a>
<a id="data" href="data:text/html,&lt;script&gt;opener.top.pwned=1&lt;/script&gt;&lt;img src={R}/data-link&gt;">a data: link</a>
<div style="background-image: url('{R}/css-inline.png'); width: 10px; height: 10px"></div>
<form id="f" action="/api/folders/1/delete" method="post"><input name="uids" value="1"><button id="go" type="submit">go</button></form>
<form id="f2" action="{R}/form" method="get"><button id="go2" type="submit">go</button></form>
<iframe src="{R}/iframe"></iframe>
<object data="{R}/object"></object><embed src="{R}/embed">
<video poster="{R}/poster.png"></video>
<body onload="{PWN}(['body-onload'])">
</body></html>"""

HOSTILE_HTML = ("From: Mallory <mallory@evil.example>\r\nTo: alice@mail.test\r\n"
                "Subject: Hostile HTML\r\nMessage-ID: <hostile-html@evil.example>\r\n"
                "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n"
                "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe plain part.\r\n"
                "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + HTML + "\r\n--b1--\r\n")

SUBJECT = f"<img src={R}/subject onerror={PWN}(['subject'])><b>Bold</b> & <i>co</i>"
FROM_NAME = "<script>window.top.pwned=['from']</script>"
HOSTILE_SUBJECT = (f'From: "{FROM_NAME}" <m@evil.example>\r\nTo: alice@mail.test\r\n'
                   f"Subject: {SUBJECT}\r\nMessage-ID: <hostile-subject@evil.example>\r\n\r\n"
                   "Look at the subject.\r\n")

BAD_NAME = "<img src=x onerror=window.top.pwned=1>..%2f..%2fevil\\\".html"
HOSTILE_ATTACHMENT = ("From: Mallory <mallory@evil.example>\r\nTo: alice@mail.test\r\n"
                      "Subject: Hostile attachment\r\nMessage-ID: <hostile-att@evil.example>\r\n"
                      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b2\r\n\r\n"
                      "--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
                      f"--b2\r\nContent-Type: text/html; name=\"x.html\"\r\n"
                      f"Content-Disposition: attachment; filename=\"{BAD_NAME}\"\r\n\r\n"
                      f"<script>window.top.pwned=['attachment']</script><img src=\"{R}/attachment\">\r\n"
                      "--b2--\r\n")

LINKS = ("From: Mallory <mallory@evil.example>\r\nTo: alice@mail.test\r\n"
         "Subject: Hostile links\r\nMessage-ID: <hostile-links@evil.example>\r\n\r\n"
         "Try javascript:window.top.pwned=1 and data:text/html,<script>alert(1)</script> "
         "and <a href=\"javascript:alert(1)\">this</a> but https://ok.example/page is fine.\r\n")

for m in [HOSTILE_HTML, HOSTILE_SUBJECT, HOSTILE_ATTACHMENT, LINKS]:
    lmtp("mallory@evil.example", "alice@mail.test", m.encode())


def no_harm(d, where):
    got = d.execute_script("return [window.pwned || null, window.top.pwned || null, document.title, location.pathname];")
    assert got[0] is None and got[1] is None, f"{where}: a script of the mail ran: {got}"
    assert "pwned" not in got[2], f"{where}: the title was changed: {got[2]}"
    assert got[3] == "/", f"{where}: the app navigated away: {got[3]}"
    assert not hits, f"{where}: requests reached the remote host: {hits}"


d = browser()
try:
    main = d.current_window_handle
    login(d, "alice", "pw-alice")
    wait(d, "the four hostile messages", lambda: len(rows(d)) == 4)

    step("a subject and a sender with markup are text")
    row(d, SUBJECT)
    assert not d.find_elements(By.CSS_SELECTOR, "#messages img, #messages b, #messages script, #messages i")
    open_row(d, SUBJECT)
    wait(d, "the message", lambda: text(d, "#v-subject") == SUBJECT)
    assert not d.find_elements(By.CSS_SELECTOR, "#v-subject *, #v-headers img, #v-headers script")
    assert FROM_NAME in text(d, "#v-headers"), text(d, "#v-headers")
    no_harm(d, "subject")

    step("links in text: only http(s) and mailto become links")
    open_row(d, "Hostile links")
    wait(d, "the message", lambda: text(d, "#v-subject") == "Hostile links")
    links = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "#v-text a")]
    assert links == ["https://ok.example/page"], links
    assert "javascript:window.top.pwned=1" in text(d, "#v-text")
    no_harm(d, "links")

    step("an attachment with a hostile name")
    open_row(d, "Hostile attachment")
    wait(d, "the message", lambda: text(d, "#v-subject") == "Hostile attachment")
    att = d.find_element(By.CSS_SELECTOR, "#v-attachments a")
    assert not d.find_elements(By.CSS_SELECTOR, "#v-attachments img, #v-attachments script")
    assert "<img" in att.text, att.text
    href = att.get_attribute("href")
    assert "/part/" in href, href
    head = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => done([r.status, r.headers.get('content-type'),
          r.headers.get('content-disposition'), r.headers.get('x-content-type-options')]), e => done(String(e)));
    """, href)
    assert head[0] == 200, head
    assert "html" not in (head[1] or ""), f"an HTML attachment served as HTML: {head}"
    assert (head[2] or "").startswith("attachment"), head
    assert "\r" not in head[2] and "\n" not in head[2], head
    # The quoted name is one well-formed quoted-string without a path in it.
    m = re.match(r'attachment; filename="((?:[^"\\]|\\.)*)"(;|$)', head[2])
    assert m and "/" not in m.group(1) and "\\" not in m.group(1), head
    assert head[3] == "nosniff", head
    no_harm(d, "attachment")

    step("hostile HTML in the sandboxed frame")
    open_row(d, "Hostile HTML")
    wait(d, "the message", lambda: text(d, "#v-subject") == "Hostile HTML")
    frame = d.find_element(By.ID, "v-frame")
    assert frame.get_attribute("sandbox") == "allow-same-origin allow-popups allow-popups-to-escape-sandbox"
    wait(d, "the frame loaded", lambda: d.execute_script(
        "const f = document.getElementById('v-frame'); const doc = f.contentDocument;"
        "return doc && doc.readyState === 'complete' && !!doc.getElementById('hello');"))
    d.switch_to.frame(frame)
    for css in ["#js", "#data", "#go", "#go2"]:
        for e in d.find_elements(By.CSS_SELECTOR, css):
            try:
                e.click()
            except Exception:
                pass
    d.switch_to.default_content()
    for h in d.window_handles:
        if h != main:
            d.switch_to.window(h)
            d.close()
    d.switch_to.window(main)
    time.sleep(2)  # time for a refresh, a form or a popup to do harm; harm is what is checked
    src = d.execute_script("return document.getElementById('v-frame').contentWindow.location.pathname;")
    assert src.endswith("/html"), f"the frame navigated to {src}"
    no_harm(d, "html")
    wait(d, "the list untouched by the form", lambda: len(rows(d)) == 4)

    step("remote content only on request")
    d.find_element(By.ID, "v-remote").click()
    wait(d, "remote images fetched", lambda: any(h.startswith("/tracker.gif") for h in hits))
    got = d.execute_script("return [window.top.pwned || null, document.title];")
    assert got[0] is None and "pwned" not in got[1], got
    assert not [h for h in hits if h.startswith(("/script", "/onerror", "/meta", "/iframe", "/form",
                                                 "/data-link", "/subject", "/attachment"))], hits
    print("OK", flush=True)
finally:
    d.quit()
    remote.shutdown()
