"""An expired session (tests/web_browser.rs::session_expiry, run with
--web-session-idle 2s): the page's next request gets a 401 and the page
shows the login form; logging in again brings the mail back."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lb import *  # noqa: E402,F403

lmtp("bob@example.net", "alice@mail.test",
     b"From: Bob <bob@example.net>\r\nTo: alice@mail.test\r\nSubject: Hello\r\n\r\nHi.\r\n")
d = browser()
try:
    login(d, "alice", "pw-alice")
    wait(d, "the message", lambda: subjects(d) == ["Hello"])
    time.sleep(4)  # past --web-session-idle 2s; what is checked is the page's answer to it
    open_row(d, "Hello")
    wait(d, "the login form after the session expired", lambda: d.find_element(By.ID, "login").is_displayed())
    assert not d.find_element(By.ID, "app").is_displayed()
    d.find_element(By.ID, "login-password").send_keys("pw-alice")
    d.find_element(By.ID, "login-submit").click()
    wait(d, "the mail again", lambda: d.find_element(By.ID, "app").is_displayed() and subjects(d) == ["Hello"])

    step("a wrong password is refused with a message")
    d.find_element(By.ID, "logout").click()
    wait(d, "the login form", lambda: d.find_element(By.ID, "login").is_displayed())
    d.find_element(By.ID, "login-password").send_keys("wrong")
    d.find_element(By.ID, "login-submit").click()
    wait(d, "an error", lambda: text(d, "#login-error") != "")
    assert not d.find_element(By.ID, "app").is_displayed()
    print("OK", flush=True)
finally:
    d.quit()
