"""The documentation site builds with ``mkdocs build --strict``: no broken link, anchor,
snippet or API reference. (CI also runs the build as a step of its own.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._markdown import DOCS, ROOT


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(DOCS / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (site / "index.html").is_file()
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert concepts.count('class="mermaid"') == 2  # both sequence diagrams
    reference = (site / "reference" / "client" / "index.html").read_text(encoding="utf-8")
    assert "as_user" in reference  # mkdocstrings rendered the docstrings
