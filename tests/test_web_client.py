"""The web client (``/app/``) and the API docs page (``/api/docs``) against a real server
process, in real headless Chromium (tests/support/browser.py).

Two people in two separate browsers register, find each other by email, chat both ways, see
the unread badge, the typing indicator and a read receipt, and send a picture; then the
server process is stopped and started again on the same port and database in the middle of
the conversation: a message sent while it is down is retried by its sender's page, one sent
right after it is back races the other page's reconnect, and both pages end up showing every
message exactly once, in ``seq`` order, having resumed from their cursors (no resync).

The pages are read through the DOM (the texts and ``data-seq`` of each chat's messages);
every wait is on a condition with a deadline. ``WEB_SCREENSHOTS=docs/screenshots`` saves
screenshots of the login screen, the chat list, the typing indicator and an open chat.
"""

from __future__ import annotations

import http.client
import json
import os
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import server_env
from tests.support.browser import browser, chromium_or_skip
from tests.support.processes import ROOT, MessengerServer

pytestmark = pytest.mark.timeout(180)

WAIT = 20.0  # seconds any one condition may take (a restart and a backoff included)
PASSWORD = "correct horse battery"
MESSAGES_JS = """
return [...document.querySelectorAll('#message-list > li.message')].map(li => ({
  text: li.querySelector('.text')?.textContent ?? '',
  seq: li.dataset.seq ? Number(li.dataset.seq) : null,
  pending: li.classList.contains('pending'),
  status: li.querySelector('.status')?.textContent ?? null,
  image: li.querySelector('img.preview')?.naturalWidth ?? null,
}));
"""


# -- plain HTTP: what the server answers for the pages and their files -------------------------
def fetch(base_url: str, path: str, method: str = "GET",
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host = base_url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> Iterator[MessengerServer]:
    data = tmp_path_factory.mktemp("web-http")
    server = MessengerServer(server_env("sqlite", request, str(data))).start()
    yield server
    server.stop()


def test_pages_and_files_are_served_with_their_types_and_caching(
        plain_server: MessengerServer) -> None:
    base = plain_server.base_url
    status, headers, _ = fetch(base, "/app")
    assert (status, headers["location"]) == (301, "/app/")

    status, headers, body = fetch(base, "/app/")
    assert status == 200 and b'<script type="module" src="main.js">' in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-content-type-options"] == "nosniff"
    policy = headers["content-security-policy"]
    assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy
    assert f"ws://{base.removeprefix('http://')}" in policy

    status, headers, _ = fetch(base, "/app/", headers={"If-None-Match": headers["etag"]})
    assert status == 304

    for path, content_type in (("/app/main.js", "text/javascript; charset=utf-8"),
                               ("/app/app.css", "text/css; charset=utf-8"),
                               ("/api/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
                               ("/api/docs/swagger-ui.css", "text/css; charset=utf-8")):
        status, headers, body = fetch(base, path)
        assert (status, headers["content-type"]) == (200, content_type), path
        assert headers["cache-control"] == "no-cache" and body

    status, headers, body = fetch(base, "/api/docs")
    assert status == 200 and b"docs/swagger-ui-bundle.js" in body
    assert "script-src 'self';" in headers["content-security-policy"]

    # only the listed files, by name: nothing else of the folder or the disk
    for path in ("/app/nope.js", "/app/..", "/app/..%2F..%2Fsetup.cfg", "/app/.hidden",
                 "/api/docs/LICENSE", "/api/docs/README.md", "/app/index.html%00"):
        status, headers, body = fetch(base, path)
        assert status == 404, path
        assert headers["content-type"].startswith("application/json"), path
        assert json.loads(body)["error"]["code"] == "not_found", path

    status, headers, body = fetch(base, "/app/main.js", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    status, headers, body = fetch(base, "/app", method="POST")
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"

    status, _, body = fetch(base, "/")  # the service's JSON answer stays
    assert status == 200 and json.loads(body)["app"] == "web-messenger"


# -- the browser -------------------------------------------------------------------------------
def screenshot_dir() -> Path | None:
    where = os.environ.get("WEB_SCREENSHOTS")
    if not where:
        return None
    path = Path(where) if Path(where).is_absolute() else ROOT / where
    path.mkdir(parents=True, exist_ok=True)
    return path


class Person:
    """One person at one browser, driving the page as they would (clicks and keys)."""

    def __init__(self, name: str, profile: Path, base_url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.by = By
        self.name = name
        self.email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        self.base_url = base_url
        self.driver = browser(profile)
        self.driver.set_window_size(1100, 720)
        self.wait_ = WebDriverWait
        self.logs: list[dict[str, Any]] = []

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Until ``condition()`` is truthy (its value), at most ``timeout`` seconds."""
        from selenium.common.exceptions import TimeoutException

        try:
            return self.wait_(self.driver, timeout, poll_frequency=0.05).until(
                lambda _driver: condition())
        except TimeoutException:
            raise AssertionError(f"{self.name}: waited {timeout}s for {what}; page shows "
                                 f"{self.messages()!r}; log {self.log()!r}") from None

    def find(self, css: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def text_of(self, css: str) -> str:
        return self.driver.execute_script(
            "return document.querySelector(arguments[0])?.textContent ?? ''", css)

    def shown(self, css: str) -> bool:
        return bool(self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return !!e && !e.closest('[hidden]')",
            css))

    def messages(self) -> list[dict[str, Any]]:
        return self.driver.execute_script(MESSAGES_JS)

    def texts(self) -> list[str]:
        return [message["text"] for message in self.messages()]

    def log(self) -> list[str]:
        """Script errors so far (refused connections while the server is down are not)."""
        self.logs += self.driver.get_log("browser")  # each call returns what is new
        return [entry["message"] for entry in self.logs
                if entry["level"] == "SEVERE" and entry.get("source") != "network"]

    def screenshot(self, name: str) -> None:
        where = screenshot_dir()
        if where is not None:
            self.driver.save_screenshot(str(where / f"{name}.png"))

    # -- what a person does ----------------------------------------------------------------
    def open_app(self) -> None:
        self.driver.get(self.base_url + "/app")  # redirected to /app/
        self.wait(lambda: self.shown("#login-form"), "the login screen")

    def register(self) -> None:
        self.find("#tab-register").click()
        self.find("#login-form [name=display_name]").send_keys(self.name)
        self.find("#login-form [name=email]").send_keys(self.email)
        self.find("#login-form [name=password]").send_keys(PASSWORD)
        self.find("#login-submit").click()
        self.wait(lambda: self.shown("#chat-list"), "the chat list")
        self.wait(self.online, "the connection")

    def online(self) -> bool:
        return self.find("#connection").get_attribute("data-state") == "online"

    def start_direct_chat(self, email: str) -> None:
        self.find("#new-chat-toggle").click()
        self.find("#direct-form [name=email]").send_keys(email)
        self.find("#direct-form button").click()

    def create_group(self, title: str, emails: list[str]) -> None:
        self.find("#new-chat-toggle").click()
        self.find("#group-form [name=title]").send_keys(title)
        self.find("#group-form [name=emails]").send_keys(", ".join(emails))
        self.find("#group-form button").click()

    def open_chat(self, title: str) -> None:
        for item in self.driver.find_elements(self.by.CSS_SELECTOR, ".chat-item"):
            if item.find_element(self.by.CSS_SELECTOR, ".chat-name").text == title:
                item.find_element(self.by.CSS_SELECTOR, "button").click()
                break
        else:
            raise AssertionError(f"{self.name}: no chat {title!r} in the list")
        self.wait(lambda: self.text_of("#chat-title") == title, f"the chat {title!r} open")

    def type(self, text: str) -> None:
        self.find("#composer-text").send_keys(text)

    def send(self, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        self.find("#composer-text").send_keys(text + Keys.ENTER)

    def chat_item(self, title: str) -> dict[str, str] | None:
        return self.driver.execute_script("""
            for (const li of document.querySelectorAll('.chat-item')) {
              if (li.querySelector('.chat-name').textContent !== arguments[0]) continue;
              const badge = li.querySelector('.badge');
              return {preview: li.querySelector('.chat-preview').textContent,
                      badge: badge.hidden ? '' : badge.textContent};
            }
            return null;""", title)

    def presence_of(self, title: str) -> str | None:
        """The presence dot on the avatar of the chat item named ``title``."""
        return self.driver.execute_script("""
            for (const li of document.querySelectorAll('.chat-item')) {
              if (li.querySelector('.chat-name').textContent !== arguments[0]) continue;
              const avatar = li.querySelector('[data-presence]');
              return avatar ? avatar.dataset.presence : null;
            }
            return null;""", title)

    def quit(self) -> None:
        self.driver.quit()


def png_bytes(width: int = 240, height: int = 150) -> bytes:
    """A real PNG (a colour gradient), made here."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 220))
                                        for x in range(width))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MessengerServer]:
    chromium_or_skip()
    env = {**server_env("sqlite", request, str(tmp_path / "data")),
           "SHUTDOWN_DRAIN_SECONDS": "0.2"}
    server = MessengerServer(env).start()
    yield server
    server.stop()


@pytest.fixture
def people(server: MessengerServer, tmp_path: Path) -> Iterator[tuple[Person, Person]]:
    alice = Person("Alice", tmp_path / "alice", server.base_url)
    try:
        bob = Person("Bob", tmp_path / "bob", server.base_url)
    except BaseException:
        alice.quit()
        raise
    yield alice, bob
    alice.quit()
    bob.quit()


def test_api_docs_page_shows_this_api(server: MessengerServer, tmp_path: Path) -> None:
    reader = browser(tmp_path / "reader")
    try:
        reader.get(server.base_url + "/api/docs")
        from selenium.webdriver.support.ui import WebDriverWait

        title = WebDriverWait(reader, WAIT, poll_frequency=0.05).until(
            lambda d: d.execute_script(
                "return document.querySelector('.swagger-ui .info .title')?.textContent"))
        assert "messenger HTTP API" in title
        paths = reader.execute_script(
            "return [...document.querySelectorAll('.opblock-summary-path')]"
            ".map(e => e.textContent)")
        assert "/api/chats/{chat_id}/messages" in {p.replace("\u200b", "") for p in paths}
        assert not [e for e in reader.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        reader.quit()


def test_two_people_chat_through_a_server_restart(
        server: MessengerServer, people: tuple[Person, Person], tmp_path: Path) -> None:
    alice, bob = people
    alice.open_app()
    alice.screenshot("login")
    bob.open_app()
    alice.register()
    bob.register()

    # Alice finds Bob by his email and writes first; Bob sees the chat arrive, unread
    alice.start_direct_chat(bob.email)
    alice.wait(lambda: alice.text_of("#chat-title") == "Bob", "the new chat with Bob")
    alice.send("Hello Bob")
    alice.wait(lambda: [(m["text"], m["status"]) for m in alice.messages()]
               == [("Hello Bob", "Sent")], "her message acknowledged")
    assert bob.wait(lambda: bob.chat_item("Alice"), "the chat in Bob's list") is not None
    bob.wait(lambda: bob.chat_item("Alice") == {"preview": "Hello Bob", "badge": "1"},
             "the last message and an unread badge")

    # Bob opens it: it is read (a receipt for Alice), and his typing shows on her side
    bob.open_chat("Alice")
    bob.wait(lambda: bob.texts() == ["Hello Bob"], "the history")
    bob.wait(lambda: bob.chat_item("Alice")["badge"] == "", "the badge cleared")
    alice.wait(lambda: alice.messages()[0]["status"] == "Read", "the read receipt")
    bob.type("Hi Ali")
    alice.wait(lambda: alice.text_of("#typing") == "Bob is typing…", "the typing indicator")
    alice.wait(lambda: "typing" in alice.chat_item("Bob")["preview"], "typing in the list")
    alice.screenshot("typing")
    bob.send("ce, how are you?")
    alice.wait(lambda: alice.texts() == ["Hello Bob", "Hi Alice, how are you?"], "Bob's reply")
    alice.wait(lambda: alice.text_of("#typing") == "", "typing over with the message")

    # Alice sends a picture: uploaded through the signed URL, previewed on Bob's side
    picture = tmp_path / "gradient.png"
    picture.write_bytes(png_bytes())
    alice.find("#file-input").send_keys(str(picture))
    alice.wait(lambda: alice.text_of("#attachments .chip.ready").startswith("gradient.png"),
               "the upload ready")
    alice.send("A picture for you")
    bob.wait(lambda: bob.messages()[-1]["text"] == "A picture for you"
             and bob.messages()[-1]["image"] == 240, "the picture shown")

    # The server stops in mid-conversation: Bob writes meanwhile, and his page keeps trying
    server.stop()
    bob.wait(lambda: not bob.online(), "Bob's page noticing the server is gone")
    alice.wait(lambda: not alice.online(), "Alice's page noticing the server is gone")
    bob.send("Sent while the server was down")
    bob.wait(lambda: (lambda last: (last["text"], last["pending"], last["status"]))(
        bob.messages()[-1]) == ("Sent while the server was down", True, "Sending…"),
        "his message shown as being sent")
    assert len(bob.messages()) == 4

    server.start()  # same port, same database
    alice.send("Sent right after it came back")  # while Bob's page may still be reconnecting

    before = ["Hello Bob", "Hi Alice, how are you?", "A picture for you"]
    late = {"Sent while the server was down", "Sent right after it came back"}

    def settled(person: Person) -> list[dict[str, Any]] | None:
        shown = person.messages()
        texts = [message["text"] for message in shown]
        if texts[:3] != before or set(texts[3:]) != late or len(texts) != 5:
            return None
        if any(message["pending"] for message in shown):
            return None
        return shown

    alice_sees = alice.wait(lambda: settled(alice), "both late messages, once each")
    bob_sees = bob.wait(lambda: settled(bob), "both late messages, once each")
    assert [m["text"] for m in alice_sees] == [m["text"] for m in bob_sees]  # one order
    seqs = [m["seq"] for m in alice_sees]
    assert seqs == sorted(seqs) == [m["seq"] for m in bob_sees] == list(range(1, 6))

    # both pages resumed over the new process (no resync), and the conversation goes on
    alice.wait(alice.online, "Alice reconnected")
    bob.wait(bob.online, "Bob reconnected")
    # each sees the other online: the later one to reconnect from its presence snapshot, the
    # earlier one from the later one's presence event
    alice.wait(lambda: alice.presence_of("Bob") == "online", "Bob's presence dot")
    bob.wait(lambda: bob.presence_of("Alice") == "online", "Alice's presence dot")
    bob.send("Good to have you back")
    alice.wait(lambda: alice.texts()[-1] == "Good to have you back", "a live message")
    assert len(alice.texts()) == len(set(alice.texts())) == 6
    assert not alice.shown("#notice") and not bob.shown("#notice")
    alice.wait(lambda: [m["status"] for m in alice.messages() if m["status"]][-1] == "Read",
               "her late message read")
    alice.screenshot("chat")

    # a group, made by email: Bob finds it in his list with its unread message
    alice.create_group("Weekend plans", [bob.email])
    alice.wait(lambda: alice.text_of("#chat-title") == "Weekend plans", "the new group")
    alice.send("Hiking on Saturday?")
    bob.wait(lambda: bob.chat_item("Weekend plans") == {
        "preview": "Alice: Hiking on Saturday?", "badge": "1"}, "the group in Bob's list")
    bob.screenshot("chat-list")
    assert not alice.log() and not bob.log()


def stored_session(person: Person) -> dict[str, Any] | None:
    return person.driver.execute_script(
        "return JSON.parse(localStorage.getItem('messenger.session'))")


def expire_access_token(person: Person) -> None:
    """Make the stored access token look expired, as after a night asleep, and reload."""
    person.driver.execute_script("""
        const state = JSON.parse(localStorage.getItem('messenger.session'));
        state.expires_at = Date.now() - 1000;
        localStorage.setItem('messenger.session', JSON.stringify(state));""")
    person.driver.refresh()


def test_the_page_refreshes_its_tokens_and_signs_out_when_they_were_spent(
        server: MessengerServer, tmp_path: Path) -> None:
    ann = Person("Ann", tmp_path / "ann", server.base_url)
    try:
        ann.open_app()
        ann.register()
        first = stored_session(ann)
        assert first is not None

        # an expired access token is refreshed: a new pair, the page stays signed in
        expire_access_token(ann)
        ann.wait(lambda: (stored_session(ann) or first)["refresh_token"]
                 != first["refresh_token"], "a new token pair")
        ann.wait(ann.online, "the connection with the new access token")
        assert ann.shown("#chat-list") and not ann.shown("#login-form")

        # someone else spends the stored refresh token: the page's use of it is a reuse, the
        # family is revoked, and the page goes back to the login screen and says why
        stolen = stored_session(ann)["refresh_token"]
        status, _, _ = fetch_json(server.base_url, "/api/auth/refresh", {"refresh_token": stolen})
        assert status == 200
        expire_access_token(ann)
        ann.wait(lambda: ann.shown("#login-form"), "the login screen")
        assert "sign in again" in ann.text_of("#login-note")
        assert stored_session(ann) is None
    finally:
        ann.quit()


def fetch_json(base_url: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
    host = base_url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=10)
    try:
        connection.request("POST", path, body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_the_client_works_through_nginx_in_front_of_two_nodes(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Relative URLs and a WebSocket URL from the page's location: through a proxy (round
    robin, no stickiness), the two people may be served by different nodes."""
    from tests.support.cluster import running_cluster
    from tests.support.nginx import Nginx, nginx_or_skip

    chromium_or_skip()
    nginx_or_skip()
    env = {**server_env("sqlite", request, str(tmp_path / "data")),
           "TRUSTED_PROXIES": "127.0.0.1"}
    with running_cluster(env, 2) as cluster:
        front = Nginx([url.removeprefix("http://") for url in cluster.urls], tmp_path / "nginx")
        alice = Person("Alice", tmp_path / "alice", front.base_url)
        bob = Person("Bob", tmp_path / "bob", front.base_url)
        try:
            for person in (alice, bob):
                person.open_app()
                person.register()
            alice.start_direct_chat(bob.email)
            alice.wait(lambda: alice.text_of("#chat-title") == "Bob", "the chat")
            alice.send("Through nginx")
            bob.wait(lambda: (bob.chat_item("Alice") or {}).get("preview") == "Through nginx",
                     "the chat in Bob's list")
            bob.open_chat("Alice")
            bob.send("Back through nginx")
            alice.wait(lambda: alice.texts() == ["Through nginx", "Back through nginx"],
                       "the reply")
            assert bob.texts() == ["Through nginx", "Back through nginx"]
            assert not alice.log() and not bob.log()
        finally:
            alice.quit()
            bob.quit()
            front.stop()


def post_json(base_url: str, path: str, body: Any, token: str) -> Any:
    host = base_url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=10)
    try:
        connection.request("POST", path, body=json.dumps(body), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        assert response.status in (200, 201), response.read()
        return json.loads(response.read())
    finally:
        connection.close()


def test_history_scrolls_back_to_the_first_message(
        server: MessengerServer, tmp_path: Path) -> None:
    ann = Person("Ann", tmp_path / "ann", server.base_url)
    try:
        ann.open_app()
        ann.register()
        token = stored_session(ann)["access_token"]
        chat = post_json(server.base_url, "/api/chats",
                         {"type": "group", "member_ids": [], "title": "Archive"}, token)
        for n in range(1, 61):
            post_json(server.base_url, f"/api/chats/{chat['id']}/messages",
                      {"text": f"note {n}", "client_msg_id": f"n{n}"}, token)
        ann.driver.refresh()  # what the page knows comes from history, not from live events
        ann.wait(lambda: ann.chat_item("Archive") is not None, "the chat listed")
        ann.open_chat("Archive")
        ann.wait(lambda: len(ann.messages()) == 50, "the newest page")
        assert ann.texts()[-1] == "note 60" and ann.shown("#load-older")
        ann.driver.execute_script("document.getElementById('messages').scrollTop = 0")
        ann.wait(lambda: len(ann.messages()) == 60, "the older page, by scrolling up")
        assert [m["seq"] for m in ann.messages()] == list(range(1, 61))
        assert ann.texts() == [f"note {n}" for n in range(1, 61)]
        assert not ann.shown("#load-older")  # has_more is false: nothing older

        # signing out ends the session on the server too: its refresh token is revoked
        refresh_token = stored_session(ann)["refresh_token"]
        ann.find("#sign-out").click()
        ann.wait(lambda: ann.shown("#login-form"), "the login screen")
        assert stored_session(ann) is None
        assert ann.driver.execute_script("return localStorage.length") == 0
        ann.wait(lambda: fetch_json(server.base_url, "/api/auth/refresh",
                                    {"refresh_token": refresh_token})[0] == 401,
                 "the token family revoked")
    finally:
        ann.quit()
