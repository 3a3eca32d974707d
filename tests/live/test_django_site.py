"""examples/django_site as a user runs it: Django's login in front of the chat, whose users are
Django's (``ChatMiddleware(django_app, identify=...)``)."""

import http.cookiejar
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from chatwsgi import protocol
from tests.support.chatting import wait_until
from tests.support.processes import ROOT, URL_RE, ServeProcess
from tests.support.sioclient import SocketIOClient

pytestmark = [pytest.mark.live, pytest.mark.slow]

pytest.importorskip("django")  # a test extra

SITE = ROOT / "examples" / "django_site"
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class DjangoSite(ServeProcess):
    """``python examples/django_site/serve.py`` on a free port, its data in ``data``."""

    def __init__(self, data):
        self.data = data
        self.process = subprocess.Popen(
            [sys.executable, str(SITE / "serve.py"), "--port", "0", "--data", str(data)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = b""
        self.url = self.wait_for_output(URL_RE).group(1)
        host, port = self.url.rsplit("/", 1)[-1].split(":")
        self.address = (host, int(port))

    def manage(self, *args):
        """Run ``manage.py`` on the site's data; its output."""
        done = subprocess.run(
            [sys.executable, str(SITE / "manage.py"), *args],
            env=dict(os.environ, CHATSITE_DATA=str(self.data)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


class Browser:
    """The stdlib's HTTP client with a cookie jar, as a browser visits Django's pages (the test
    process is not monkey-patched: plain blocking I/O)."""

    def __init__(self, site):
        self.site = site
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path, data=None):
        """(status, final URL after redirects, body text)."""
        try:
            with self.opener.open(self.site.url + path, data, timeout=20) as reply:
                return reply.status, reply.geturl(), reply.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.geturl(), error.read().decode()

    def post(self, path, fields, page=None):
        """POST a form to ``path`` from the page it is on (``page``, by default ``path``), with
        the CSRF token Django put in it."""
        _, _, form = self.get(page or path)
        fields = dict(fields, csrfmiddlewaretoken=CSRF_RE.search(form).group(1))
        return self.get(path, urlencode(fields).encode())

    def sign_in(self, username, password):
        """Django's LoginView: GET the form, POST it; the page it lands on."""
        return self.post("/accounts/login/?next=/", {"username": username, "password": password})

    def cookie_header(self):
        """The Cookie header a browser sends this site (Django's session cookie among them)."""
        return "; ".join("%s=%s" % (cookie.name, cookie.value) for cookie in self.cookies)

    def chat(self, clients, transport="websocket"):
        """A Socket.IO client sending this browser's cookies, connected to /chat."""
        client = SocketIOClient(self.site.address, transport)
        client.cookie = self.cookie_header() or None
        clients.append(client.connect())
        return client


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    running = DjangoSite(tmp_path_factory.mktemp("django_site"))
    try:
        assert "created user bob" in running.manage("ensure_user", "bob", "bob-secret-1")
        yield running
    finally:
        assert running.stop() == 0
        print(running.output.decode("utf-8", "replace"))  # shown when a test fails
        assert b"Traceback" not in running.output


def signed_in(site, username, password):
    browser = Browser(site)
    status, url, page = browser.sign_in(username, password)
    assert (status, url.rsplit(site.url, 1)[-1]) == (200, "/"), page[:300]
    assert 'id="nick-form"' in page  # the chat page, served by Django to a signed-in user
    return browser


def nickname_of(client):
    (event,) = client.wait_event("nickname")
    return event["nickname"]


def test_djangos_own_pages_are_served(site):
    browser = Browser(site)
    status, url, page = browser.get("/")
    assert (status, url) == (200, site.url + "/accounts/login/?next=/")  # login_required
    assert "csrfmiddlewaretoken" in page and 'name="username"' in page
    assert browser.get("/no-such-page/")[0] == 404
    status, _, page = browser.sign_in("demo", "wrong")
    assert status == 200 and "correct username and password" in page
    signed_in(site, "demo", "demo")
    status, _, health = browser.get("/healthz")  # the chat's, in front of Django
    assert status == 200 and json.loads(health)["status"] == "ok"


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
def test_signed_in_users_chat_under_their_django_usernames(site, clients, transport):
    demo = signed_in(site, "demo", "demo").chat(clients, transport)
    bob = signed_in(site, "bob", "bob-secret-1").chat(clients)
    assert (nickname_of(demo), nickname_of(bob)) == ("demo", "bob")
    room = "django-" + transport
    assert demo.call("join", {"room": room})["ok"]
    assert bob.call("join", {"room": room})["roster"] == ["bob", "demo"]
    assert demo.call("message", {"room": room, "id": "d1", "text": "hello from Django"})["ok"]
    (message,) = bob.wait_event("message")
    assert (message["author"], message["text"]) == ("demo", "hello from Django")
    refusal = bob.call("nickname", {"nickname": "demo2"})
    assert (refusal["ok"], refusal["code"]) == (False, "nickname_fixed")
    assert bob.call("roster", {"room": room})["members"] == ["bob", "demo"]


def test_signed_out_is_refused(site, clients):
    stranger = Browser(site).chat(clients)  # no session cookie at all
    browser = signed_in(site, "demo", "demo")
    status, _, page = browser.get("/accounts/")
    assert status == 200 and "Signed in as demo" in page
    cookie = browser.cookie_header()
    status, url, _ = browser.post("/accounts/logout/", {}, page="/accounts/")  # Django's LogoutView
    assert (status, url) == (200, site.url + "/accounts/login/")
    signed_out = SocketIOClient(site.address)
    signed_out.cookie = cookie  # the session Django ended
    clients.append(signed_out.connect())
    for client in (stranger, signed_out):
        (error,) = client.wait_event("error", lambda args: args[0].get("event") == "connect")
        assert error["code"] == "not_signed_in"
        wait_until(lambda c=client: c.closed)
        assert protocol.DISCONNECT in client.raw and client.events("nickname") == []


def test_a_second_tab_takes_the_name_over(site, clients):
    browser = signed_in(site, "bob", "bob-secret-1")
    old_tab = browser.chat(clients)
    assert nickname_of(old_tab) == "bob"
    new_tab = browser.chat(clients, "xhr-polling")
    assert nickname_of(new_tab) == "bob"
    wait_until(lambda: old_tab.closed)
    assert protocol.DISCONNECT in old_tab.raw
    assert new_tab.call("join", {"room": "tabs"})["roster"] == ["bob"]


# --- the page, in Chromium -------------------------------------------------------------------------


@pytest.fixture
def chromium():
    """One headless Chromium (Debian's chromium + chromium-driver), its tabs sharing cookies."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    from tests.browser.conftest import CHROMIUM_FLAGS

    profile = tempfile.mkdtemp(prefix="chatwsgi-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS + ["--user-data-dir=" + profile]:
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def status(driver):
    return driver.execute_script(
        "var s = document.getElementById('status'); return [s.dataset.state, s.textContent];"
    )


@pytest.mark.browser
def test_the_page_takes_its_name_from_the_site_and_says_when_it_is_refused(site, clients, chromium):
    from selenium.webdriver.common.by import By

    from tests.browser.pages import message_texts, send, status_is, wait

    bob = signed_in(site, "bob", "bob-secret-1").chat(clients)
    assert bob.call("join", {"room": "lobby"})["ok"] and nickname_of(bob) == "bob"
    chromium.get(site.url + "/")  # to Django's login form, and back to the chat once signed in
    chromium.find_element(By.NAME, "username").send_keys("demo")
    chromium.find_element(By.NAME, "password").send_keys("demo")
    chromium.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(chromium, lambda d: d.find_element(By.ID, "me").text == "demo")
    first_tab = chromium.current_window_handle
    assert not chromium.find_element(By.ID, "nick-form").is_displayed()  # never asked for a name
    wait(chromium, lambda d: d.find_element(By.ID, "room-name").text == "lobby")
    send(chromium, "typed in Chromium")
    assert bob.wait_event("message")[0]["author"] == "demo"

    # A second tab of the same user takes the name over; the first says it was ended.
    chromium.switch_to.new_window("tab")
    chromium.get(site.url + "/")
    wait(chromium, lambda d: d.find_element(By.ID, "me").text == "demo")
    wait(chromium, lambda d: message_texts(d)[-1:] == ["typed in Chromium"])
    second_tab = chromium.current_window_handle
    chromium.switch_to.window(first_tab)
    wait(chromium, status_is("ended"))

    # Signed out in a third tab, the second one loses its connection: reconnecting is refused,
    # and the page says why instead of trying again and again.
    chromium.switch_to.new_window("tab")
    chromium.get(site.url + "/accounts/")
    chromium.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(chromium, lambda d: d.current_url.endswith("/accounts/login/"))
    chromium.switch_to.window(second_tab)
    chromium.execute_script("window.chat.socket.socket.transport.close()")
    wait(chromium, lambda d: status(d) == ["ended", "Sign in to use the chat."])
    assert chromium.execute_script("return window.chat.socket.socket.reconnecting") in (False, None)
