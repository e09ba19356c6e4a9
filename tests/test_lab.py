"""JupyterLab as a user starts it: scripts/lab.sh, headless, as whatever user runs the tests (root in CI, as in
most GPU containers). The server must come up, offer the Python 3 kernel of .venv, and that kernel, started
through the server's REST API and driven over its websocket, must execute a study notebook cell by cell."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parents[1]
TOKEN = "lossnb-test"
websocket = pytest.importorskip("websocket")  # websocket-client, a dependency of jupyter_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, path, data=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if data is not None else "GET",
                                     data=json.dumps(data).encode() if data is not None else None,
                                     headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def execute(ws, session, code, timeout=120):
    """Run code in the kernel; the execute_reply's status and any error."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "username": "test", "session": session,
                                   "msg_type": "execute_request", "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                                    "allow_stdin": False, "stop_on_error": True}}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == "execute_reply":
            content = msg["content"]
            return content["status"], f"{content.get('ename', '')}: {content.get('evalue', '')}"
    raise TimeoutError(code[:80])


@pytest.fixture
def lab(tmp_path):
    port = free_port()
    env = {**os.environ, "LOSSNB_NO_SETUP": "1", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(["bash", "scripts/lab.sh", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             f"--IdentityProvider.token={TOKEN}"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                api(port, "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_lab_starts_headless_and_its_kernel_executes_a_study(lab):
    assert "python3" in api(lab, "/api/kernelspecs")["kernelspecs"]
    kernel = api(lab, "/api/kernels", {"name": "python3"})
    ws = websocket.create_connection(f"ws://127.0.0.1:{lab}/api/kernels/{kernel['id']}/channels?token={TOKEN}",
                                     timeout=120)
    try:
        session = uuid.uuid4().hex
        # the kernel is .venv's interpreter, the one with lossnb installed
        same = f"import sys; assert sys.prefix == {sys.prefix!r}, sys.prefix"
        assert execute(ws, session, same) == ("ok", ": ")
        assert execute(ws, session, "import os; os.chdir('notebooks')")[0] == "ok"  # where Lab opens them
        notebook = nbformat.read(ROOT / "notebooks" / "loss_catalogue.ipynb", as_version=4)
        cells = [c for c in notebook.cells if c.cell_type == "code"]
        assert len(cells) >= 3
        for cell in cells:
            status, error = execute(ws, session, cell.source)
            assert status == "ok", (cell.source[:80], error)
        status, _ = execute(ws, session, "assert len(L.available()) > 20 and 'arcface' in L.available()")
        assert status == "ok"
    finally:
        ws.close()


@pytest.mark.parametrize("changed", [False, True])
def test_lab_sets_up_only_when_the_requirements_changed_since_the_last_set_up(tmp_path, changed):
    """scripts/lab.sh in a copy whose set-up only leaves a mark and whose jupyter only answers: the set-up runs
    when a requirements file differs from the one the last set-up recorded, and not otherwise."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "lab.sh").write_text((ROOT / "scripts" / "lab.sh").read_text())
    (tmp_path / "scripts" / "setup.sh").write_text("touch set-up-ran\n")
    for name in ("requirements.txt", "pyproject.toml", "package-lock.json"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "jupyter").write_text("#!/bin/sh\necho lab started\n")
    (venv_bin / "jupyter").chmod(0o755)
    stamp = subprocess.run(["sha256sum", "requirements.txt", "pyproject.toml", "package-lock.json"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    (tmp_path / ".venv" / ".lossnb-setup").write_text(stamp)
    if changed:
        with open(tmp_path / "requirements.txt", "a") as f:
            f.write("tqdm\n")
    env = {k: v for k, v in os.environ.items() if k != "LOSSNB_NO_SETUP"}
    out = subprocess.run(["bash", "scripts/lab.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "lab started" in out and (tmp_path / "set-up-ran").exists() == changed
