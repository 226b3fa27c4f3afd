"""The main browser flow (tests/web_browser.rs::browser_flow): a user works in
the page while IMAP sessions in IDLE watch every change arrive, and mail
delivered over LMTP or changed over IMAP shows in the open page without a
reload."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lb import *  # noqa: E402,F403
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402

SPOOL = os.environ["SPOOL"]
FAIL_FLAG = os.environ["FAIL_FLAG"]
ATTACH = os.environ["ATTACH_FILE"]


def imap_cmd(commands):
    """Another IMAP client at work (the page must follow)."""
    s = socket.create_connection(("127.0.0.1", int(os.environ["IMAP_PORT"])), timeout=BOUND)
    f = s.makefile("rb")
    f.readline()
    script = ['LOGIN "alice" "pw-alice"'] + commands
    for i, cmd in enumerate(script):
        tag = f"b{i}"
        s.sendall(f"{tag} {cmd}\r\n".encode())
        while True:
            line = f.readline().decode()
            assert line, "IMAP closed"
            if line.startswith(tag + " "):
                assert line.startswith(tag + " OK"), line
                break
    s.close()


def imap_store_flag(seq):
    imap_cmd(["SELECT INBOX", f"STORE {seq} +FLAGS (\\Flagged)"])


def key(d, k):
    """A shortcut key, typed with nothing focused."""
    d.execute_script("if (document.activeElement) document.activeElement.blur();")
    ActionChains(d).send_keys(k).perform()


d = browser()
inbox = Idle("alice", "pw-alice", "INBOX")
drafts = Idle("alice", "pw-alice", "Drafts")
sent = Idle("alice", "pw-alice", "Sent")
try:
    step("log in")
    login(d, "alice", "pw-alice")
    d.execute_script("window.__sameDocument = 'yes';")  # gone if the page ever reloads

    step("a folder of 1,000 messages")
    wait(d, "50 rows on the first page", lambda: len(rows(d)) == 50)
    wait(d, "the page counter", lambda: text(d, "#page-info") == "1–50 of 1000")
    assert subjects(d)[0] == "Status report 1000", subjects(d)
    assert "unread" in row_class(d, "Status report 1000")
    assert folder_count(d, "INBOX") == "1000", folder_count(d, "INBOX")
    # INBOX first, then the special-use folders.
    names = [li.get_attribute("data-name") for li in d.find_elements(By.CSS_SELECTOR, "#folders li")]
    assert names[0] == "INBOX" and names.index("Projects") > names.index("Trash"), names
    page1 = subjects(d)
    assert page1[:10] == [f"Status report {n}" for n in range(1000, 990, -1)], page1
    d.find_element(By.ID, "page-next").click()
    wait(d, "the second page", lambda: text(d, "#page-info") == "51–100 of 1000")
    page2 = subjects(d)
    assert len(page2) == 50 and not set(page1) & set(page2), (page1, page2)
    d.find_element(By.ID, "page-prev").click()
    wait(d, "the first page again", lambda: text(d, "#page-info") == "1–50 of 1000")

    step("open one")
    open_row(d, "Status report 1000")
    wait(d, "the message view", lambda: text(d, "#v-subject") == "Status report 1000")
    body = text(d, "#v-text")
    assert "This is report number 1000." in body, body
    link = d.find_element(By.CSS_SELECTOR, "#v-text a")
    assert link.get_attribute("href") == "https://example.org/reports/1000", link.get_attribute("href")
    assert link.get_attribute("rel") == "noopener noreferrer" and link.get_attribute("target") == "_blank"
    quoted = d.find_element(By.CSS_SELECTOR, "#v-text pre.quoted")
    assert not quoted.is_displayed(), "quoted text is folded"
    d.find_element(By.CSS_SELECTOR, "#v-text .quote-toggle").click()
    wait(d, "the quoted text unfolded", lambda: quoted.is_displayed() and "the previous report" in quoted.text)
    heads = text(d, "#v-headers")
    assert "Sender 1000" in heads and "alice@mail.test" in heads, heads
    inbox.wait(r"^\* 1000 FETCH .*\\Seen", "\\Seen set by reading on the web")
    wait(d, "the row marked read", lambda: "unread" not in row_class(d, "Status report 1000"))
    wait(d, "the unread count down", lambda: folder_count(d, "INBOX") == "999")

    step("flag it")
    d.find_element(By.ID, "v-flag").click()
    inbox.wait(r"^\* 1000 FETCH .*\\Flagged", "\\Flagged set on the web")
    wait(d, "the row's star", lambda: "flagged" in row_class(d, "Status report 1000"))
    assert d.find_element(By.ID, "v-flag").text == "Unflag"

    step("the flagged filter")
    Select(d.find_element(By.ID, "filter")).select_by_value("flagged")
    wait(d, "only the flagged message", lambda: subjects(d) == ["Status report 1000"])
    Select(d.find_element(By.ID, "filter")).select_by_value("")
    wait(d, "the whole list again", lambda: text(d, "#page-info") == "1–50 of 1000")

    step("move it")
    Select(d.find_element(By.ID, "act-move")).select_by_visible_text("Projects")
    inbox.wait(r"^\* 1000 EXPUNGE", "the move out of INBOX")
    wait(d, "the list without it", lambda: text(d, "#page-info") == "1–50 of 999")
    assert "Status report 1000" not in subjects(d)
    open_folder(d, "Projects")
    wait(d, "Projects holds it", lambda: subjects(d) == ["Status report 1000"])
    open_folder(d, "INBOX")
    wait(d, "back in INBOX", lambda: text(d, "#page-info") == "1–50 of 999")

    step("delete it (the # key)")
    open_row(d, "Status report 999")
    wait(d, "message 999 open", lambda: text(d, "#v-subject") == "Status report 999")
    inbox.wait(r"^\* 999 FETCH .*\\Seen", "\\Seen on 999")
    key(d, "#")
    inbox.wait(r"^\* 999 EXPUNGE", "the delete (moved to Trash)")
    wait(d, "the list without it", lambda: text(d, "#page-info") == "1–50 of 998")
    open_folder(d, "Trash")
    wait(d, "Trash holds it", lambda: subjects(d) == ["Status report 999"])
    open_folder(d, "INBOX")
    wait(d, "back in INBOX", lambda: text(d, "#page-info") == "1–50 of 998")

    step("keyboard: ? and j/k")
    key(d, "?")
    wait(d, "the shortcut list", lambda: d.find_element(By.ID, "help").is_displayed())
    assert "Archive" in text(d, "#help")
    d.find_element(By.ID, "help-close").click()
    wait(d, "the shortcut list closed", lambda: not d.find_element(By.ID, "help").is_displayed())
    key(d, "j")
    wait(d, "j opens the newest", lambda: text(d, "#v-subject") == "Status report 998")
    key(d, "j")
    wait(d, "j opens the next", lambda: text(d, "#v-subject") == "Status report 997")
    key(d, "k")
    wait(d, "k goes back", lambda: text(d, "#v-subject") == "Status report 998")

    step("search")
    box = d.find_element(By.ID, "search")
    box.send_keys("quasar\n")
    wait(d, "one hit for a word in one body", lambda: subjects(d) == ["Status report 123"])
    assert text(d, "#page-info") == "1–1 of 1"
    box.clear()
    box.send_keys("\n")
    wait(d, "the whole list again", lambda: text(d, "#page-info") == "1–50 of 998")

    step("an LMTP delivery shows up without a reload")
    unread_before = int(folder_count(d, "INBOX"))
    lmtp("news@example.com", "alice@mail.test",
         "From: News <news@example.com>\r\nTo: alice@mail.test\r\nSubject: Live delivery\r\n"
         "Message-ID: <live-1@example.com>\r\n\r\nArrived while the page was open.\r\n")
    inbox.wait(r"^\* 999 EXISTS", "the LMTP delivery")
    wait(d, "the new message at the top", lambda: subjects(d)[0] == "Live delivery")
    wait(d, "the page counter", lambda: text(d, "#page-info") == "1–50 of 999")
    wait(d, "the unread count up by one", lambda: int(folder_count(d, "INBOX")) == unread_before + 1)

    step("a flag set over IMAP shows up without a reload")
    imap_store_flag(997)  # reports 991..1000 were delivered in order: seq 997 is report 997
    wait(d, "the star from IMAP", lambda: "flagged" in row_class(d, "Status report 997"))

    step("reply, with an attachment, autosaved and saved as a draft")
    open_row(d, "Status report 998")
    wait(d, "message 998 open", lambda: text(d, "#v-subject") == "Status report 998")
    d.find_element(By.ID, "v-reply").click()
    wait(d, "the compose form", lambda: d.find_element(By.ID, "compose-pane").is_displayed())
    assert "sender998@example.net" in d.find_element(By.ID, "c-to").get_attribute("value")
    assert d.find_element(By.ID, "c-subject").get_attribute("value") == "Re: Status report 998"
    quoted_body = d.find_element(By.ID, "c-body").get_attribute("value")
    assert "> This is report number 998." in quoted_body, quoted_body
    d.find_element(By.ID, "c-body").send_keys("Thanks, noted.")
    d.find_element(By.ID, "c-files").send_keys(ATTACH)
    wait(d, "the attachment listed", lambda: "notes.txt" in text(d, "#c-attachments"))
    # Autosave: a few seconds after the last change.
    drafts.wait(r"^\* 1 EXISTS", "the autosaved draft")
    wait(d, "the saved status", lambda: "Draft saved" in text(d, "#c-status"))
    d.find_element(By.ID, "c-body").send_keys(" More later.")
    drafts.clear()
    d.find_element(By.ID, "c-save").click()
    drafts.wait(r"^\* [12] EXISTS", "the saved draft")
    drafts.wait(r"^\* 1 EXPUNGE", "the old draft replaced")

    step("send fails: the error is shown and the draft kept")
    open(FAIL_FLAG, "w").close()
    d.find_element(By.ID, "c-send").click()
    wait(d, "the send error", lambda: "mail system down" in text(d, "#c-error"))
    assert d.find_element(By.ID, "compose-pane").is_displayed()
    assert not [n for n in os.listdir(SPOOL) if n.endswith(".eml")], "nothing was handed to sendmail"

    step("send through the fake sendmail")
    os.remove(FAIL_FLAG)
    drafts.clear()
    d.find_element(By.ID, "c-send").click()
    wait(d, "the compose form closed", lambda: not d.find_element(By.ID, "compose-pane").is_displayed())
    wait(d, "the sent message in the spool", lambda: [n for n in os.listdir(SPOOL) if n.endswith(".eml")])
    drafts.wait(r"^\* 1 EXPUNGE", "the draft removed after sending")
    sent.wait(r"^\* 1 EXISTS", "the copy in Sent")

    step("compose a new message and save it as a draft")
    key(d, "c")
    wait(d, "an empty compose form", lambda: d.find_element(By.ID, "c-to").get_attribute("value") == ""
         and d.find_element(By.ID, "compose-pane").is_displayed())
    d.find_element(By.ID, "c-to").send_keys("carol@example.net")
    d.find_element(By.ID, "c-subject").send_keys("Plans for Friday")
    d.find_element(By.ID, "c-body").send_keys("Dinner at eight?")
    drafts.clear()
    d.find_element(By.ID, "c-save").click()
    drafts.wait(r"^\* 1 EXISTS", "the new draft")
    d.find_element(By.ID, "c-close").click()
    wait(d, "the compose form closed", lambda: not d.find_element(By.ID, "compose-pane").is_displayed())

    step("multi-select: flag and unflag two messages")
    for subject in ["Status report 996", "Status report 995"]:
        wait(d, f"{subject} selected", lambda: row(d, subject).find_element(
            By.CSS_SELECTOR, "input.select").click() or "selected" in row_class(d, subject))
    d.find_element(By.ID, "act-flag").click()
    inbox.wait(r"^\* 996 FETCH .*\\Flagged", "the first selected flagged")
    inbox.wait(r"^\* 995 FETCH .*\\Flagged", "the second selected flagged")
    wait(d, "both starred", lambda: all("flagged" in row_class(d, f"Status report {n}") for n in (995, 996)))
    d.find_element(By.ID, "act-unflag").click()
    inbox.wait(r"^\* 996 FETCH \((?!.*Flagged)", "the first unflagged")
    inbox.wait(r"^\* 995 FETCH \((?!.*Flagged)", "the second unflagged")
    wait(d, "both unstarred", lambda: not any("flagged" in row_class(d, f"Status report {n}") for n in (995, 996)))
    d.find_element(By.ID, "select-all").click()
    d.find_element(By.ID, "select-all").click()  # selects the page, then clears it
    wait(d, "nothing selected", lambda: not d.find_elements(By.CSS_SELECTOR, "#messages li.selected"))

    step("archive with the a key")
    open_row(d, "Status report 994")
    wait(d, "message 994 open", lambda: text(d, "#v-subject") == "Status report 994")
    key(d, "a")
    inbox.wait(r"^\* 994 EXPUNGE", "the archive move")
    wait(d, "the list without it", lambda: "Status report 994" not in subjects(d))

    step("the thread view")
    d.find_element(By.ID, "thread").click()
    wait(d, "threads listed", lambda: subjects(d)[:2] == ["Live delivery", "Status report 998"])
    d.find_element(By.ID, "thread").click()
    wait(d, "the plain list again", lambda: text(d, "#page-info") == "1–50 of 998")

    step("folders: create, rename, delete; one made over IMAP shows up")
    d.find_element(By.ID, "folder-new").click()
    wait(d, "the name prompt", lambda: d.switch_to.alert)
    d.switch_to.alert.send_keys("Receipts")
    d.switch_to.alert.accept()
    open_folder(d, "Receipts")
    wait(d, "an empty folder", lambda: text(d, "#page-info") == "0–0 of 0")
    d.find_element(By.ID, "folder-rename").click()
    wait(d, "the rename prompt", lambda: d.switch_to.alert)
    d.switch_to.alert.send_keys("Receipts 2026")
    d.switch_to.alert.accept()
    wait(d, "the renamed folder", lambda: folder_count(d, "Receipts 2026") is not None
         and folder_count(d, "Receipts") is None)
    open_folder(d, "Receipts 2026")
    d.find_element(By.ID, "folder-delete").click()
    wait(d, "the delete question", lambda: d.switch_to.alert)
    d.switch_to.alert.accept()
    wait(d, "the folder gone", lambda: folder_count(d, "Receipts 2026") is None)
    imap_cmd(["CREATE Elsewhere"])
    wait(d, "a folder made over IMAP", lambda: folder_count(d, "Elsewhere") is not None)
    imap_cmd(['RENAME Elsewhere "Elsewhere too"'])
    wait(d, "a folder renamed over IMAP", lambda: folder_count(d, "Elsewhere too") is not None
         and folder_count(d, "Elsewhere") is None)

    assert d.execute_script("return window.__sameDocument;") == "yes", "the page reloaded"
    # No script error and no CSP violation (an inline style or script would be one).
    bad = [e for e in d.get_log("browser") if e.get("source") in ("javascript", "security")]
    assert not bad, f"errors in the browser's console: {bad}"

    step("log out")
    d.find_element(By.ID, "logout").click()
    wait(d, "the login form", lambda: d.find_element(By.ID, "login").is_displayed())
    status = d.execute_async_script(
        "const done = arguments[0]; fetch('/api/folders').then(r => done(r.status), e => done(String(e)));")
    assert status == 401, f"after logout /api/folders answered {status}"
    d.refresh()
    wait(d, "the login form after a reload", lambda: d.find_element(By.ID, "login").is_displayed())
    print("OK", flush=True)
finally:
    inbox.close()
    drafts.close()
    sent.close()
    d.quit()
