"""Fixtures for the SDK tests: a real all-in-one (`open-autoglm up`) on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.nats import free_port

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "open-autoglm is up"


BROKEN = """\
name = "broken"

[[tasks]]
name = "clean"
func = "no_such_module_here:clean"
input_key = "raw"
"""


@pytest.fixture(scope="session")
def pipelines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The all-in-one's pipelines_dir: the README's example pipeline and one broken file."""
    folder = tmp_path_factory.mktemp("pipelines")
    for name in ("summarize.toml", "textops.py"):
        shutil.copy(ROOT / "examples" / "pipelines" / name, folder / name)
    (folder / "broken.toml").write_text(BROKEN)
    return folder


@pytest.fixture(scope="session")
def allinone(pipelines_dir: Path) -> Iterator[str]:
    """`open-autoglm up` in a child process; yields its OpenAI base URL once its banner is out."""
    port = free_port()
    cli = Path(sys.executable).with_name("open-autoglm")
    proc = subprocess.Popen(
        [str(cli), "up", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A shared 2-core CI box can take minutes per answer; the deadline is not under test here.
        env={**os.environ, "AGL_PIPELINES_DIR": str(pipelines_dir), "AGL_REQUEST_TIMEOUT_S": "400"},
    )
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if READY_LINE in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("open-autoglm up did not come up:\n" + "".join(lines[-40:]))
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture()
def agent_env(allinone: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """OPENAUTOGLM_BASE_URL points at the all-in-one for this test."""
    monkeypatch.setenv("OPENAUTOGLM_BASE_URL", allinone)
    return allinone
