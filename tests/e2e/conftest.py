"""End-to-end fixtures: a real gunicorn server on a free port with its own data dir,
one API key per role made with the `faceapi keys` CLI, and headless Debian chromium
driven by Playwright (never a downloaded browser).

Every test here is marked `e2e`; without chromium the browser tests skip with the reason."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
ROLES = ("app", "operator", "reviewer", "auditor", "admin")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
KEY_RE = re.compile(r"\bfa_[A-Za-z0-9]+_[A-Za-z0-9]+\b")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under pytest-xdist (`make test` runs `--dist loadgroup`) the browser tests stay in
    # one worker: they share the session's gunicorn and chromium, which every worker
    # would otherwise start (and load the engine's models into) again.
    if not config.pluginmanager.hasplugin("xdist"):
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("e2e"))


def chromium_path() -> str | None:
    configured = os.environ.get("FACEAPI_TEST_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """The running server: its base URL, environment, data dir and a key per role."""

    url: str
    env: dict[str, str]
    data_dir: Path
    keys: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    def cli(self, *args: str) -> str:
        """Run the `faceapi` command against this server's data dir."""
        done = subprocess.run([sys.executable, "-m", "faceapi", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"faceapi {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def create_key(self, role: str, name: str, *extra: str) -> str:
        # Each key its own owner: the two-person rule counts owners, not keys.
        owner = name.replace(" ", "-") + "@example.org"
        out = self.cli("keys", "create", "--role", role, "--name", name, "--owner", owner,
                       *extra)
        match = KEY_RE.search(out)
        assert match, f"no key in output: {out!r}"
        return match.group(0)

    def api(self, method: str, path: str, *, key: str | None = None,
            body: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One JSON request to the API over real HTTP."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server did not answer:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn (2 workers, preloaded app, local engine) on a free port."""
    if chromium_path() is None:
        pytest.skip("chromium not found: `apt-get install chromium` (or `make browser` as "
                    "root) to run the console's browser tests")
    root = tmp_path_factory.mktemp("e2e")
    data_dir = root / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update({
        "FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
        "FACEAPI_LOG_FORMAT": "json", "FACEAPI_POLICIES_DIR": str(REPO / "policies"),
        "FACEAPI_BIND": f"127.0.0.1:{port}", "FACEAPI_WORKERS": "2",
        "FACEAPI_TIMEOUT": "120",
        # The browser tests click fast from one address; the limits are tested elsewhere.
        "FACEAPI_RATE_LIMIT_DEFAULT": "100000/minute",
        "FACEAPI_RATE_LIMIT_VERIFY": "100000/minute",
    })
    srv = Server(url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir,
                 log_path=root / "server.log")
    srv.cli("db", "upgrade")
    for role in ROLES:
        srv.keys[role] = srv.create_key(role, f"e2e {role}")
    srv.keys["reviewer2"] = srv.create_key("reviewer", "e2e second reviewer")
    assert srv.log_path is not None
    with srv.log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(srv.url, proc, srv.log_path)
        yield srv
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop gunicorn and its workers (its own process group), if still running."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium not found: `apt-get install chromium` to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh browser context (no cookies) at desktop width."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  base_url=server.url, accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def new_page(browser: Any, server: Server) -> Iterator[Any]:
    """A factory for more isolated browser sessions (a second reviewer, another role)."""
    contexts: list[Any] = []

    def make(width: int = 1280) -> Any:
        height = WIDTHS["phone"][1] if width < 600 else WIDTHS["desktop"][1]
        context = browser.new_context(viewport={"width": width, "height": height},
                                      base_url=server.url, accept_downloads=True)
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


# The repo's fixture set (tests/data/faces, see its README): single-face images of
# people, by identity. The unnamed faces serve as impostors only.
FIXTURE_FACES = {
    "angelina_jolie": ["deepface/tests/unit/dataset/img5.jpg",
                       "deepface/tests/unit/dataset/img6.jpg",
                       "deepface/tests/unit/dataset/img11.jpg"],
    "jennifer_aniston": ["deepface/tests/unit/dataset/img12.jpg",
                         "deepface/tests/unit/dataset/img55.jpg"],
    "einstein": ["CompreFace/embedding-calculator/src/services/imgtools/test/files/"
                 "einstein.jpeg"],
    "unnamed_surprised": ["face-api.js/examples/images/surprised.jpg"],
    "unnamed_neutral": ["face-api.js/examples/images/neutral.jpg"],
}


def face_sets() -> dict[str, list[Path]]:
    """Images by identity, single-face images only: the repo's fixture set when it is
    there, else the shared data set beside the repo."""
    fixtures = REPO / "tests" / "data" / "faces"
    found = {name: [fixtures / f for f in files if (fixtures / f).is_file()]
             for name, files in FIXTURE_FACES.items()}
    found = {name: paths for name, paths in found.items() if paths}
    if len(found.get("angelina_jolie", [])) >= 3:
        return found
    root = Path(os.environ.get("FACEAPI_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))
    labels = root / "LABELS.csv"
    if not labels.is_file():
        return {}
    notes = root / "IMAGE_NOTES.csv"
    counts: dict[str, str] = {}
    if notes.is_file():
        with notes.open(newline="") as handle:
            counts = {row["file"]: row.get("faces", "1") for row in csv.DictReader(handle)}
    shared: dict[str, list[Path]] = {}
    with labels.open(newline="") as handle:
        for row in csv.DictReader(handle):
            path = root / row["file"]
            if counts.get(row["file"], "1") == "1" and path.is_file() \
                    and path.stat().st_size < 4_000_000:
                shared.setdefault(row["identity"], []).append(path)
    return shared


@pytest.fixture(scope="session")
def faces() -> dict[str, list[Path]]:
    found = face_sets()
    if not found:
        pytest.skip("no face images: tests/data/faces or the shared data set is needed")
    return found


def image_body(path: Path) -> dict[str, str]:
    return {"bytes": base64.b64encode(path.read_bytes()).decode("ascii")}


def sign_in(tab: Any, key: str, path: str = "/console/") -> None:
    """Sign in through the form, as a person would."""
    tab.goto(path)
    tab.get_by_label("API key").fill(key)
    with tab.expect_navigation():
        tab.get_by_role("button", name="Sign in").click()
    assert tab.locator("#signout").count() == 1, tab.content()[:2000]


def shoot(tab: Any, name: str) -> None:
    """Screenshots of the current page at 1280 and 390 px wide (git-ignored folder)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = tab.viewport_size
    for label, (width, height) in (("1280", WIDTHS["desktop"]), ("390", WIDTHS["phone"])):
        tab.set_viewport_size({"width": width, "height": height})
        tab.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        # No page may scroll sideways: everything fits or scrolls inside its own box.
        overflow = tab.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} overflows sideways by {overflow}px at {width}px"
    tab.set_viewport_size(original)
