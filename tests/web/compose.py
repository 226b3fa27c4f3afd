"""Reply-all, forward with the original's attachment, view source, inline
cid: images and the text/HTML switch, on a server without --sendmail
(tests/web_browser.rs::compose_without_sendmail): the page says sending is
not configured and offers drafts only."""

import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lb import *  # noqa: E402,F403

# A 1x1 PNG.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082")).decode()
PDF = base64.b64encode(b"%PDF-1.4\n% the plan\n%%EOF\n").decode()

lmtp("bob@example.net", "alice@mail.test", (
    "From: Bob <bob@example.net>\r\nTo: Alice <alice@mail.test>, Dave <dave@example.net>\r\n"
    "Cc: Carol <carol@example.net>\r\nSubject: The plan\r\nMessage-ID: <plan@example.net>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n"
    "--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe plan is attached.\r\n"
    "--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"plan.pdf\"\r\n"
    f"Content-Transfer-Encoding: base64\r\n\r\n{PDF}\r\n--m--\r\n").encode())
lmtp("news@example.com", "alice@mail.test", (
    "From: News <news@example.com>\r\nTo: alice@mail.test\r\nSubject: With a logo\r\n"
    "Message-ID: <logo@example.com>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/related; boundary=r\r\n\r\n"
    "--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<p id=\"p\">Our logo: <img id=\"logo\" src=\"cid:logo@example.com\" width=\"1\" height=\"1\"></p>\r\n"
    "--r\r\nContent-Type: image/png\r\nContent-ID: <logo@example.com>\r\n"
    f"Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n{PNG}\r\n--r--\r\n").encode())

d = browser()
try:
    login(d, "alice", "pw-alice")
    wait(d, "two messages", lambda: len(rows(d)) == 2)

    step("reply all: everyone but me")
    open_row(d, "The plan")
    wait(d, "the message", lambda: text(d, "#v-subject") == "The plan")
    assert "plan.pdf" in text(d, "#v-attachments")
    d.find_element(By.ID, "v-reply-all").click()
    wait(d, "the compose form", lambda: d.find_element(By.ID, "compose-pane").is_displayed())
    to = d.find_element(By.ID, "c-to").get_attribute("value")
    cc = d.find_element(By.ID, "c-cc").get_attribute("value")
    assert "bob@example.net" in to and "dave@example.net" in to and "alice@" not in to, to
    assert "carol@example.net" in cc and "alice@" not in cc, cc
    assert d.find_element(By.ID, "c-nosend").is_displayed(), "says sending is not configured"
    assert not d.find_element(By.ID, "c-send").is_displayed(), "no Send button without --sendmail"
    d.find_element(By.ID, "c-close").click()
    wait(d, "closed", lambda: not d.find_element(By.ID, "compose-pane").is_displayed())

    step("forward with the attachment, saved as a draft")
    d.find_element(By.ID, "v-forward").click()
    wait(d, "the forward form", lambda: d.find_element(By.ID, "c-subject").get_attribute("value") == "Fwd: The plan")
    wait(d, "the original's attachment", lambda: "plan.pdf" in text(d, "#c-attachments"))
    assert "The plan is attached." in d.find_element(By.ID, "c-body").get_attribute("value")
    d.find_element(By.ID, "c-to").send_keys("erin@example.net")
    d.find_element(By.ID, "c-save").click()
    wait(d, "saved", lambda: "Draft saved" in text(d, "#c-status"))
    d.find_element(By.ID, "c-close").click()

    step("view source")
    href = d.find_element(By.ID, "v-source").get_attribute("href")
    assert href.endswith("/source"), href
    src = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text().then(t => done([r.status, t])), e => done(String(e)));", href)
    assert src[0] == 200 and "Message-ID: <plan@example.net>" in src[1], src

    step("inline cid: image in the HTML view; the text view")
    open_row(d, "With a logo")
    wait(d, "the message", lambda: text(d, "#v-subject") == "With a logo")
    wait(d, "the cid image loaded in the frame", lambda: d.execute_script(
        "const doc = document.getElementById('v-frame').contentDocument;"
        "const img = doc && doc.getElementById('logo');"
        "return !!img && img.complete && img.naturalWidth === 1;"))
    assert not d.find_element(By.ID, "v-text").is_displayed()
    d.find_element(By.ID, "v-show-text").click()
    wait(d, "the text view", lambda: d.find_element(By.ID, "v-text").is_displayed()
         and not d.find_element(By.ID, "v-frame").is_displayed())
    print("OK", flush=True)
finally:
    d.quit()
