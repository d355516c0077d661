"""Generate the notebooks from their sources: the lessons' ``.ipynb`` and the exercises and solutions.

``python -m academy_diffusion.course.exercises --lessons`` (what ``make sync`` calls) writes each
``notebooks/NN_*.ipynb`` from its jupytext source ``notebooks/NN_*.py``, without outputs and with
stable cell ids (so regenerating changes nothing that did not change).

``python -m academy_diffusion.course.exercises`` (what ``make exercises`` calls) reads every
``solutions/source/NN_*.py`` (jupytext percent format) and writes

* ``solutions/NN_*.ipynb``: the source with the solution markers removed;
* ``exercises/NN_*.ipynb``: each block between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
  replaced by a stub that raises NotImplementedError, and each cell tagged ``needs-solution``
  (the checks and runs that call the student's code) tagged ``raises-exception`` instead, so
  that nbval accepts the NotImplementedError there and nowhere else.

Both also write the repository's location, configured once in ``pyproject.toml``
(``[tool.academy-diffusion]``), into every notebook: the "Open in Colab" badge under the title and
the URL the setup cell installs the package from (see :func:`stamp`).

``--check`` writes nothing and exits 1 if a committed notebook differs from what it would write.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "solutions" / "source"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("your code here: replace this line")'
_BLOCK = re.compile(rf"^([ \t]*){re.escape(BEGIN)}\n.*?^[ \t]*{re.escape(END)}[ \t]*$", re.M | re.S)
_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
_PACKAGE_URL = re.compile(r'"git\+https://[^"]*"')


def repository() -> dict:
    """The course's GitHub location and release from ``pyproject.toml``: ``{"github": "owner/name", "ref": "v0.2.0"}``
    (the ref is the tag of this version: a notebook installs the package it was generated with)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {**pyproject["tool"]["academy-diffusion"], "ref": f"v{pyproject['project']['version']}"}


def colab_badge(notebook: str) -> str:
    """The "Open in Colab" badge (markdown) of ``notebook``, a path relative to the repository root."""
    repo = repository()
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{repo['github']}/blob/{repo['ref']}/{notebook})")


def package_url() -> str:
    """What a setup cell installs where the package is missing and no bundle was uploaded (Colab):
    ``git+https://github.com/owner/name@v<version>``."""
    repo = repository()
    return f"git+https://github.com/{repo['github']}@{repo['ref']}"


def stamp(text: str, notebook: str) -> str:
    """``text`` with every Colab badge pointing at ``notebook`` and every ``"git+https://..."`` install
    URL set to :func:`package_url`: how the configured repository gets into the notebooks."""
    return _PACKAGE_URL.sub(f'"{package_url()}"', _BADGE.sub(lambda m: colab_badge(notebook), text))


def exercise_text(source: str) -> str:
    """``source`` with every solution block replaced by a NotImplementedError stub (same indent)."""
    return _BLOCK.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}{STUB}", source)


def solution_text(source: str) -> str:
    """``source`` with the marker lines removed and the solution kept."""
    return "\n".join(line for line in source.split("\n") if line.strip() not in (BEGIN, END))


def build(source_path: Path):
    """Return ``(exercise, solution)`` notebooks (nbformat) for one source file."""
    import jupytext

    nb = jupytext.read(source_path)
    nb.metadata.pop("jupytext", None)
    versions = []
    for kind, target in zip(("exercise", "solution"), targets(source_path), strict=True):
        out = copy.deepcopy(nb)
        with_stable_ids(out, source_path.stem[:2])  # regeneration is byte-identical
        for cell in out.cells:
            cell.source = stamp(cell.source, target.relative_to(ROOT).as_posix())
            tags = list(cell.metadata.get("tags", []))
            if kind == "exercise":
                cell.source = exercise_text(cell.source)
                tags = ["raises-exception" if t == "needs-solution" else t for t in tags]
            else:
                cell.source = solution_text(cell.source)
                tags = [t for t in tags if t != "needs-solution"]
            if tags:
                cell.metadata["tags"] = tags
            else:
                cell.metadata.pop("tags", None)
        versions.append(out)
    return versions[0], versions[1]


def with_stable_ids(nb, prefix: str):
    """Number the cells ``<prefix>-00``, ``<prefix>-01``, ... (nbformat would draw random ids)."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{prefix}-{i:02d}"
    return nb


def stamp_sources(sources, notebook_of) -> None:
    """Rewrite each ``.py`` source in place with :func:`stamp` (``notebook_of(source)``: its notebook)."""
    for source in sources:
        text = source.read_text()
        stamped = stamp(text, notebook_of(source).relative_to(ROOT).as_posix())
        if stamped != text:
            source.write_text(stamped)
            print(f"updated the repository location in {source.relative_to(ROOT)}")


def sync_lessons() -> None:
    """Write every lesson's ``.ipynb`` from its ``.py`` source (no outputs, stable ids), after
    stamping the configured repository into the source."""
    import jupytext
    import nbformat

    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    stamp_sources(sources, lambda source: source.with_suffix(".ipynb"))
    for source in sources:
        nb = with_stable_ids(jupytext.read(source), source.stem[:2])
        source.with_suffix(".ipynb").write_text(nbformat.writes(nb) + "\n")
        print(f"wrote {source.with_suffix('.ipynb').relative_to(ROOT)}")


def targets(source_path: Path) -> tuple[Path, Path]:
    name = source_path.with_suffix(".ipynb").name
    return ROOT / "exercises" / name, ROOT / "solutions" / name


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed notebooks")
    parser.add_argument("--lessons", action="store_true", help="write the lessons' .ipynb from their .py")
    args = parser.parse_args(argv)
    if args.lessons:
        sync_lessons()
        return 0
    stale = []
    sources = sorted(SOURCE_DIR.glob("[0-9][0-9]_*.py"))
    if not args.check:
        stamp_sources(sources, lambda source: targets(source)[0])
    for source in sources:
        for nb, path in zip(build(source), targets(source), strict=True):
            text = nbformat.writes(nb) + "\n"
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(path.relative_to(ROOT))
            else:
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date (run `make exercises`): " + ", ".join(map(str, stale)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
