"""`collectstatic` as the Docker image runs it (DEBUG off: WhiteNoise's compressed manifest storage)
succeeds: every file a static file names exists (Chart.js names its source map)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_collectstatic_with_the_manifest_storage_succeeds(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "false",
        "SECRET_KEY": "collectstatic-test-only-not-a-secret-0123456789abcdefghijklmnop",
        "PAYMENT_GATEWAY": "stripe",
        "STRIPE_SECRET_KEY": "sk_test_collectstatic",
        "STRIPE_WEBHOOK_SECRET": "whsec_collectstatic",
        "STATIC_ROOT": str(tmp_path / "static"),
        "VAR_DIR": str(tmp_path / "var"),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = (tmp_path / "static" / "staticfiles.json").read_text()
    assert "vendor/chart.js/chart.umd.min.js" in manifest
