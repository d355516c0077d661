"""``make colab``: the course's package, with its shipped checkpoints, as one wheel to upload to Colab.

Where the repository is not published (or not reachable), an instructor uploads this one file into
the notebook's folder (Colab's Files pane); every lesson's setup cell installs an uploaded
``academy_diffusion-*.whl`` before it tries the repository. The wheel is built from a clean copy of
the package (git's tracked files when there is a checkout), so nothing from the working folder's
caches or build output ends up in it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("academy_diffusion/course/lessons.py", "academy_diffusion/pretrained/manifest.json",
          "academy_diffusion/pretrained/cfg.pt", "academy_diffusion/pretrained/classifier.pt")


def _package_files() -> list[Path]:
    """The files a wheel is built from: the package, pyproject.toml, README.md and LICENSE (tracked or new,
    never ignored)."""
    try:
        wanted = ["academy_diffusion", "pyproject.toml", "README.md", "LICENSE"]
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *wanted],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        return [Path(p) for p in listed if (ROOT / p).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but caches
        found = [p.relative_to(ROOT) for p in (ROOT / "academy_diffusion").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        return found + [Path(p) for p in ("pyproject.toml", "README.md", "LICENSE")]


def build_bundle(out_dir: Path | str = ROOT / "build" / "colab") -> Path:
    """Build ``academy_diffusion-<version>-py3-none-any.whl`` into ``out_dir`` and return its path.

    Raises RuntimeError (with pip's output) when the build fails, and when the wheel lacks the
    shipped checkpoints; a failed build leaves no wheel behind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="academy-bundle-") as tmp:
        src, dist = Path(tmp) / "src", Path(tmp) / "dist"
        for rel in _package_files():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
        run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                              "--disable-pip-version-check", "-w", str(dist), str(src)],
                             capture_output=True, text=True)
        wheels = sorted(dist.glob("academy_diffusion-*.whl"))
        if run.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"building the wheel failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        names = set(zipfile.ZipFile(wheels[0]).namelist())
        missing = [n for n in NEEDED if n not in names]
        if missing:
            raise RuntimeError(f"the wheel lacks {missing}: check [tool.setuptools] in pyproject.toml")
        target = out_dir / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "colab"), help="folder for the wheel")
    args = parser.parse_args(argv)
    try:
        wheel = build_bundle(args.out)
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    size = wheel.stat().st_size / 2**20
    print(f"built {wheel} ({size:.1f} MiB).\nOn Colab: open a lesson, upload this file in the Files pane (the folder "
          "icon on the left) next to the notebook, then run the setup cell: it installs the bundle before it tries "
          "the repository.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
