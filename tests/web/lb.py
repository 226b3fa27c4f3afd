"""Shared pieces of the browser tests (tests/web_browser.rs runs these
scripts): a headless Chromium over WebDriver (Debian's chromium,
chromium-driver and python3-selenium), waits with bounds, and raw IMAP IDLE
watchers. Every wait has a generous bound so timing noise never fails a run;
a wait that runs out is a failure that says what it waited for."""

import atexit
import os
import re
import shutil
import smtplib
import socket
import tempfile
import threading
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ["WEB_BASE"]
IMAP_PORT = int(os.environ["IMAP_PORT"])
LMTP_PORT = int(os.environ["LMTP_PORT"])
BOUND = 30  # seconds: a bound, not a measurement

__all__ = ["BASE", "BOUND", "By", "Select", "browser", "wait", "Idle", "lmtp", "login",
           "rows", "row", "open_row", "subjects", "row_class", "open_folder", "folder_count", "text", "step"]


def step(name):
    print("--", name, flush=True)


def browser(width=1280, height=860, dark=False):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="lb-chromium-")
    atexit.register(shutil.rmtree, profile, True)
    for arg in [
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        f"--window-size={width},{height}", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-sync", "--disable-extensions",
        "--disable-component-update", "--disable-default-apps", "--mute-audio",
        "--lang=en-US", f"--user-data-dir={profile}",
    ]:
        opts.add_argument(arg)
    if dark:
        opts.add_argument("--force-dark-mode")
        opts.add_argument("--blink-settings=preferredColorScheme=0")
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_script_timeout(BOUND)
    d.set_page_load_timeout(BOUND * 3)
    return d


def wait(d, what, fn, bound=BOUND):
    """Waits until fn() is truthy (exceptions count as not yet); returns its value."""
    last = [None]

    def probe(_):
        try:
            return fn()
        except WebDriverException as e:
            last[0] = e
            return False
        except (AssertionError, LookupError, ValueError) as e:
            last[0] = e
            return False

    try:
        return WebDriverWait(d, bound, poll_frequency=0.1).until(probe)
    except Exception:
        logs = ""
        try:
            logs = "\n".join(str(entry) for entry in d.get_log("browser"))
        except Exception:
            pass
        raise AssertionError(f"timed out waiting for: {what} (last error: {last[0]!r})\nbrowser log:\n{logs}")


def text(d, css):
    return d.find_element(By.CSS_SELECTOR, css).text


def rows(d):
    return d.find_elements(By.CSS_SELECTOR, "#messages li.msg")


def row(d, subject):
    """The list row whose subject is exactly `subject`."""
    for r in rows(d):
        if r.find_element(By.CSS_SELECTOR, ".subject").text == subject:
            return r
    raise LookupError(f"no row with subject {subject!r}")


def subjects(d):
    """The list's subjects, read in one go (a live update may redraw the
    list between two WebDriver calls)."""
    return d.execute_script(
        "return [...document.querySelectorAll('#messages li.msg .subject')].map(e => e.textContent);")


def row_class(d, subject):
    """The class list of the row with that subject, read in one go."""
    got = d.execute_script(
        "for (const li of document.querySelectorAll('#messages li.msg'))"
        "  if (li.querySelector('.subject').textContent === arguments[0]) return li.className;"
        "return null;", subject)
    if got is None:
        raise LookupError(f"no row with subject {subject!r}")
    return got


def open_folder(d, name):
    """Clicks a folder in the folder list (redrawn by live updates too)."""
    wait(d, f"a click on the folder {name!r}", lambda: d.find_element(
        By.CSS_SELECTOR, f'#folders li[data-name="{name}"]').click() or True)
    wait(d, f"the folder {name!r} shown", lambda: d.find_element(
        By.CSS_SELECTOR, "#folders li.current").get_attribute("data-name") == name)


def folder_count(d, name):
    """The unread count shown next to a folder ('' for none)."""
    return d.execute_script(
        "const li = document.querySelector('#folders li[data-name=\"' + arguments[0] + '\"]');"
        "if (!li) return null; const c = li.querySelector('.count'); return c ? c.textContent : '';", name)


def open_row(d, subject, bound=BOUND):
    """Clicks the row with that subject; the list may be redrawn at any
    moment by a live update, so a stale row is looked up again."""
    wait(d, f"a click on the row {subject!r}", lambda: row(d, subject).click() or True, bound)


def login(d, user, password):
    d.get(BASE + "/")
    wait(d, "the login form", lambda: d.find_element(By.ID, "login").is_displayed())
    d.find_element(By.ID, "login-user").send_keys(user)
    d.find_element(By.ID, "login-password").send_keys(password)
    d.find_element(By.ID, "login-submit").click()
    wait(d, "the app after login", lambda: d.find_element(By.ID, "app").is_displayed())
    wait(d, "the first page of the message list",
         lambda: rows(d) or d.find_elements(By.CSS_SELECTOR, "#messages li.empty"))


def lmtp(sender, rcpt, message):
    with smtplib.LMTP("127.0.0.1", LMTP_PORT) as c:
        c.sendmail(sender, [rcpt], message)


class Idle:
    """An IMAP session in IDLE on one mailbox, over a raw socket; a thread
    collects every untagged line the server pushes."""

    def __init__(self, user, password, mailbox):
        self.sock = socket.create_connection(("127.0.0.1", IMAP_PORT), timeout=BOUND)
        self.file = self.sock.makefile("rb")
        self.lines = []
        self.cond = threading.Condition()
        self.mailbox = mailbox
        self._line()  # greeting
        self._cmd(f'a1 LOGIN "{user}" "{password}"', "a1")
        self._cmd(f'a2 SELECT "{mailbox}"', "a2")
        self.sock.sendall(b"a3 IDLE\r\n")
        while not self._line().startswith("+"):
            pass
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _line(self):
        line = self.file.readline()
        if not line:
            raise AssertionError(f"IMAP ({self.mailbox}): connection closed")
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def _cmd(self, line, tag):
        self.sock.sendall(line.encode() + b"\r\n")
        while True:
            got = self._line()
            if got.startswith(tag + " "):
                assert got.startswith(tag + " OK"), f"IMAP {line!r}: {got}"
                return

    def _read(self):
        while True:
            try:
                line = self.file.readline()
            except OSError:
                return
            if not line:
                return
            with self.cond:
                self.lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
                self.cond.notify_all()

    def clear(self):
        """Forgets the lines seen so far."""
        with self.cond:
            self.lines.clear()

    def wait(self, pattern, what):
        """Waits for an untagged line matching `pattern` (a regex) and
        consumes it; the lines around it stay (servers may order an
        EXPUNGE and an EXISTS of one change either way)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + BOUND
        with self.cond:
            while True:
                for i, line in enumerate(self.lines):
                    if rx.search(line):
                        del self.lines[i]
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"IMAP IDLE on {self.mailbox} did not see {what} ({pattern}); saw {self.lines}")
                self.cond.wait(left)

    def close(self):
        try:
            self.sock.sendall(b"DONE\r\na4 LOGOUT\r\n")
            self.sock.close()
        except OSError:
            pass
