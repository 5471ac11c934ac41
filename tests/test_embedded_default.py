"""Smoke test of the embedded default (`make run` without DATABASE_URL or REDIS_URL): SQLite and
Celery's filesystem broker under VAR_DIR, a real runserver and a real worker.

A password reset requested over HTTP is queued on commit, picked up by the worker through the
filesystem broker and printed by the console email backend in the worker's output.
"""

from __future__ import annotations

import http.cookiejar
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from html.parser import HTMLParser
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
EMAIL = "smoke@example.test"
PASSWORD = "pw-Long-enough-123"
RESET_PATH = "/accounts/password/reset/"

pytestmark = pytest.mark.slow

# Variables that would take the processes away from the embedded default.
NOT_EMBEDDED = {
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "PAYMENT_GATEWAY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SITE_URL",
    "SECURE_SSL_REDIRECT",
    "VAR_DIR",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CsrfTokenParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.token: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "input" and fields.get("name") == "csrfmiddlewaretoken" and self.token is None:
            self.token = fields.get("value")


def tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no output)"
    return "\n".join(text.splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_password_reset_email_goes_through_the_embedded_worker(tmp_path):
    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in NOT_EMBEDDED}
    env.update(
        VAR_DIR=str(var_dir),
        DEBUG="true",
        SECRET_KEY="embedded-smoke-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        # The processes run in the temp dir, so nothing they write lands in the checkout.
        PYTHONPATH=os.pathsep.join(filter(None, [str(BASE_DIR), os.environ.get("PYTHONPATH")])),
    )
    manage_py = str(BASE_DIR / "manage.py")

    def manage(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, manage_py, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"

    manage("migrate", "--noinput")
    assert (var_dir / "allowance.sqlite3").exists(), "the embedded default did not use SQLite under VAR_DIR"
    manage(
        "shell",
        "-c",
        f"from tenants.models import User; User.objects.create_user({EMAIL!r}, {PASSWORD!r})",
    )

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "runserver.log"
    worker_log = tmp_path / "worker.log"

    with ExitStack() as stack:
        server_out = stack.enter_context(server_log.open("wb"))
        worker_out = stack.enter_context(worker_log.open("wb"))
        server = subprocess.Popen(
            [sys.executable, manage_py, "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=tmp_path,
            env=env,
            stdout=server_out,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, server)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO"],
            cwd=tmp_path,
            env=env,
            stdout=worker_out,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, worker)

        def logs() -> str:
            return f"--- runserver ---\n{tail(server_log)}\n--- worker ---\n{tail(worker_log)}"

        # The server answers /healthz.
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, f"runserver exited ({server.returncode})\n{logs()}"
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"runserver did not answer /healthz within 20 s\n{logs()}"
            time.sleep(0.25)

        # A real browser's round trip: the form (and its CSRF cookie), then the POST.
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with opener.open(base_url + RESET_PATH, timeout=10) as response:
            assert response.status == 200
            page = response.read().decode()
        parser = CsrfTokenParser()
        parser.feed(page)
        assert parser.token, f"no csrfmiddlewaretoken on {RESET_PATH}:\n{page[:2000]}"

        data = urllib.parse.urlencode({"csrfmiddlewaretoken": parser.token, "email": EMAIL}).encode()
        request = urllib.request.Request(
            base_url + RESET_PATH, data=data, headers={"Referer": base_url + RESET_PATH}, method="POST"
        )
        try:
            with opener.open(request, timeout=10) as response:
                assert response.status < 400
        except urllib.error.HTTPError as error:
            pytest.fail(f"POST {RESET_PATH} answered {error.code}:\n{error.read()[:2000]!r}\n{logs()}")

        # The worker sends it; the console backend prints it in the worker's output.
        deadline = time.monotonic() + 60
        while True:
            output = worker_log.read_text(errors="replace")
            if EMAIL in output and "Reset your password" in output:
                break
            assert worker.poll() is None, f"the worker exited ({worker.returncode})\n{logs()}"
            assert time.monotonic() < deadline, f"no reset email in the worker's output within 60 s\n{logs()}"
            time.sleep(0.25)

        # Printed by the console mailer, logged by the worker at INFO: an email is not a warning.
        email_at = output.index("Reset your password")
        record = output.rfind("/MainProcess]", 0, email_at)
        level = output[output.rfind(": ", 0, record) + 2 : record]
        assert level == "INFO", f"the email was logged at {level!r}\n{logs()}"
