"""Start JupyterLab for the course: what ``make lab`` runs, and what the browser test starts.

``python -m academy_diffusion.course.lab`` registers this Python environment as a Jupyter kernel named
after the course (``academy-diffusion``), starts JupyterLab on your working copy of the lessons on
a free local port, waits until it answers, and prints the URL of lesson 1 (token included).
Ctrl-C stops it.

**Your working copy.** JupyterLab autosaves, so it opens copies, never the course's committed
notebooks: ``my-lessons/`` (git-ignored) holds ``notebooks/`` and ``exercises/``, created on first
use. A later ``make lab`` adds lessons that are new in the course and never overwrites yours;
``make lab-reset`` (``--reset``) starts over from the originals after asking, keeping the old
copy as ``my-lessons.bak-<time>/``.

The lessons' kernel inherits this process's environment, so ``ACADEMY_PROFILE``,
``ACADEMY_MNIST_DIR`` and friends set in the shell reach every lesson.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERNEL_NAME = "academy-diffusion"
KERNEL_DISPLAY_NAME = "Python (academy-diffusion)"
FIRST_LESSON = "notebooks/01_tiny_ddpm.ipynb"
WORKING_COPY = ROOT / "my-lessons"
COPIED = ("notebooks", "exercises")  # the folders a student works in


def prepare_working_copy(dest: Path = WORKING_COPY, source: Path = ROOT) -> list[Path]:
    """Copy each lesson and exercise notebook that ``dest`` lacks; never overwrite one that is there.

    The copies are plain notebooks (the jupytext pairing is dropped), so saving one writes only
    that notebook, and they name the course's kernel (see :func:`register_kernel`), so JupyterLab
    starts it on opening without asking which kernel to use. Returns the files copied now (empty
    when the working copy is complete).
    """
    copied = []
    for folder in COPIED:
        for original in sorted((source / folder).glob("[0-9][0-9]_*.ipynb")):
            target = dest / folder / original.name
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            nb = json.loads(original.read_text())
            meta = nb.setdefault("metadata", {})
            meta.pop("jupytext", None)  # a plain notebook: no paired .py in the copy
            meta["kernelspec"] = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
            tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            tmp.replace(target)
            copied.append(target)
    return copied


def reset_working_copy(dest: Path = WORKING_COPY, source: Path = ROOT, confirm=input) -> Path | None:
    """Start over from the originals: move ``dest`` aside to ``<dest>.bak-<time>`` and copy afresh.

    Asks first (``confirm`` returns the answer); returns the backup folder, or None if declined
    or there was nothing to reset.
    """
    if dest.exists():
        answer = confirm(f"Start over from the original lessons? Your copies in {dest} move to a backup "
                         "folder. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return None
        backup = dest.with_name(f"{dest.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        dest.rename(backup)
        print(f"your previous copies are in {backup}")
    else:
        backup = None
    prepare_working_copy(dest, source)
    return backup


def register_kernel() -> Path:
    """Register this interpreter as the ``academy-diffusion`` kernel (inside its own environment,
    ``--sys-prefix``, so nothing outside the environment changes). Returns the kernelspec folder."""
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
                    "--display-name", KERNEL_DISPLAY_NAME], check=True, stdout=subprocess.DEVNULL)
    return Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def free_port(preferred: int = 8888) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, otherwise a free port the OS picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free local port")


@dataclass
class LabServer:
    """A running JupyterLab: its process, base URL (``http://127.0.0.1:PORT``) and token."""

    process: subprocess.Popen
    base_url: str
    token: str

    def url(self, path: str = FIRST_LESSON) -> str:
        """The browser URL that opens ``path`` (relative to the repository) in JupyterLab."""
        return f"{self.base_url}/lab/tree/{path}?token={self.token}"

    def api(self, path: str, data: dict | None = None) -> dict:
        """GET (or, with ``data``, POST) the Jupyter server's REST API at ``/api/<path>``."""
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(f"{self.base_url}/api/{path}", data=body,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def stop(self) -> None:
        """Shut JupyterLab (and the kernels it started) down."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_lab(root: Path = ROOT, port: int | None = None, open_browser: bool = False, log=None,
              env: dict | None = None, timeout: float = 60.0) -> LabServer:
    """Start JupyterLab on ``root`` at 127.0.0.1 and wait until its API answers.

    ``port=None`` takes 8888 if free, else any free port. ``log`` is a file for the server's
    output (default: this terminal). ``env`` adds to (or overrides) this process's environment,
    which the server and its kernels inherit. Raises ``RuntimeError`` if the server exits or
    stays silent for ``timeout`` seconds.
    """
    port = port or free_port()
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--ServerApp.open_browser={open_browser}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI often run as root
    if open_browser:
        cmd.append(f"--ServerApp.default_url=/lab/tree/{FIRST_LESSON}")
    process = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT if log else None,
                               env={**os.environ, **(env or {})})
    server = LabServer(process, f"http://127.0.0.1:{port}", token)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode} before it answered")
        try:
            server.api("status")
            return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"JupyterLab did not answer on port {port} within {timeout:.0f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: 8888 if free)")
    parser.add_argument("--no-browser", action="store_true", help="only print the URL, do not open a browser")
    parser.add_argument("--reset", action="store_true", help="start your working copy over from the originals")
    args = parser.parse_args(argv)
    if args.reset:
        reset_working_copy()
        return
    copied = prepare_working_copy()
    print(f"your working copy of the lessons: {WORKING_COPY}" + (f" ({len(copied)} notebooks copied now)"
                                                                  if copied else ""))
    spec = register_kernel()
    print(f"registered the Jupyter kernel '{KERNEL_NAME}' ({spec})")
    server = start_lab(root=WORKING_COPY, port=args.port, open_browser=not args.no_browser)
    print(f"\n  JupyterLab is running. Open the course at:\n\n    {server.url()}\n\n"
          f"  The lessons open on 'Python 3', which here is this environment; '{KERNEL_DISPLAY_NAME}' in the\n"
          f"  kernel menu is the same environment under the course's name. Ctrl-C stops the server.\n", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
