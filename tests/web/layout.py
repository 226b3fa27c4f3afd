"""Layout (tests/web_browser.rs::layout_and_screenshot): three panes on a
desktop, one pane at a time with a back button on a 375-px phone, the dark
colour scheme when the system asks for it; and the README's screenshot."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lb import *  # noqa: E402,F403

SHOT = os.environ["SCREENSHOT"]

MAILS = [
    ("Grandma Rose <rose@family.example>", "Photos from the garden",
     "Hi dear,\r\n\r\nThe tomatoes came in early this year. I put the photos on\r\n"
     "https://photos.family.example/garden-2026 so you can see them.\r\n\r\n"
     "Come by on Sunday if you can; there is cake.\r\n\r\nLove,\r\nRose\r\n", None),
    ("Hardware Store <orders@hardware.example>", "Your order #48213 has shipped",
     "Your order has shipped and should arrive on Thursday.\r\n", "invoice-48213.pdf"),
    ("Sam Carter <sam@work.example>", "Re: Friday's meeting notes",
     "Sounds good to me. I will bring the numbers.\r\n\r\n> Can you send the slides\r\n> before Friday?\r\n", None),
    ("Pi-hole <pihole@home.lan>", "Weekly report: 18% of queries blocked",
     "Blocked 18,204 of 101,132 queries this week.\r\n", None),
    ("Book Club <club@books.example>", "Next month: The Left Hand of Darkness",
     "We meet on the 12th at the library.\r\n", None),
]


def mail(i, sender, subject, body, attachment):
    head = (f"From: {sender}\r\nTo: Alice <alice@mail.test>\r\nSubject: {subject}\r\n"
            f"Date: 2{i} Nov 2026 0{i}:15:00 +0000\r\nMessage-ID: <shot-{i}@example.net>\r\nMIME-Version: 1.0\r\n")
    if not attachment:
        return head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    return (head + "Content-Type: multipart/mixed; boundary=sep\r\n\r\n--sep\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body +
            f"--sep\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"{attachment}\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n--sep--\r\n")


for i, (sender, subject, body, att) in enumerate(reversed(MAILS)):
    lmtp("someone@example.net", "alice@mail.test", mail(i, sender, subject, body, att).encode())


def visible(d, id_):
    return d.find_element(By.ID, id_).is_displayed()


d = browser(1280, 800)
try:
    step("desktop: three panes")
    login(d, "alice", "pw-alice")
    wait(d, "the messages", lambda: len(rows(d)) == len(MAILS))
    assert visible(d, "folders-pane") and visible(d, "list-pane") and visible(d, "view-pane")
    assert not visible(d, "back")
    open_row(d, "Photos from the garden")
    wait(d, "the message", lambda: text(d, "#v-subject") == "Photos from the garden")
    assert visible(d, "folders-pane") and visible(d, "list-pane"), "desktop keeps all panes"
    d.execute_script("document.activeElement && document.activeElement.blur();")
    d.save_screenshot(SHOT)
    bg = d.execute_script("return getComputedStyle(document.body).backgroundColor;")
    assert bg in ("rgb(255, 255, 255)",), f"light scheme background: {bg}"

    step("phone: one pane at a time")
    d.set_window_size(375, 740)
    width = d.execute_script("return window.innerWidth;")
    assert width <= 375, width
    wait(d, "only the view on a phone", lambda: visible(d, "view-pane") and not visible(d, "list-pane")
         and not visible(d, "folders-pane"))
    assert visible(d, "back")
    overflow = d.execute_script("return document.documentElement.scrollWidth;")
    assert overflow <= 375, f"the page is wider than the phone: {overflow}"
    d.find_element(By.ID, "back").click()
    wait(d, "the list after back", lambda: visible(d, "list-pane") and not visible(d, "view-pane"))
    d.find_element(By.ID, "show-folders").click()
    wait(d, "the folders", lambda: visible(d, "folders-pane") and not visible(d, "list-pane"))
    open_folder(d, "INBOX")
    wait(d, "the list again", lambda: visible(d, "list-pane") and not visible(d, "folders-pane"))
    open_row(d, "Your order #48213 has shipped")
    wait(d, "the view", lambda: visible(d, "view-pane") and text(d, "#v-subject") == "Your order #48213 has shipped")
    assert "invoice-48213.pdf" in text(d, "#v-attachments")
    d.find_element(By.ID, "v-reply").click()
    wait(d, "compose alone", lambda: visible(d, "compose-pane") and not visible(d, "view-pane"))
    d.find_element(By.ID, "back").click()
    wait(d, "back from compose", lambda: not visible(d, "compose-pane"))
finally:
    d.quit()

step("dark scheme")
d = browser(1280, 800, dark=True)
try:
    login(d, "alice", "pw-alice")
    dark = d.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches;")
    assert dark, "the browser did not ask for the dark scheme"
    bg = d.execute_script("return getComputedStyle(document.body).backgroundColor;")
    assert bg == "rgb(22, 25, 31)", f"dark scheme background: {bg}"
    print("OK", flush=True)
finally:
    d.quit()
