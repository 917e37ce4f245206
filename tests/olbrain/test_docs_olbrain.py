"""Every ```python block of docs/pages/olbrain.md runs as a script and exits 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "pages" / "olbrain.md"
_FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BLOCKS = [
    (DOCS.read_text(encoding="utf-8").count("\n", 0, m.start()) + 2, m.group(1))
    for m in _FENCE.finditer(DOCS.read_text(encoding="utf-8"))
]


def test_the_page_has_python_examples() -> None:
    """The page shows at least the quick example (so the parametrized test below runs)."""
    assert BLOCKS


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"olbrain.md:{b[0]}" for b in BLOCKS])
def test_docs_example(line: int, code: str, tmp_path: Path) -> None:
    """The block runs unchanged in a fresh interpreter, warnings as errors, and exits 0."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "agent: Echo: Order #4421 placed" in completed.stdout
    assert "run: succeeded" in completed.stdout


def test_relative_links_point_at_existing_pages() -> None:
    """Every relative link of the page names a page that exists in docs/pages."""
    links = re.findall(r"\]\(([^)#:]+\.md)\)", DOCS.read_text(encoding="utf-8"))
    assert links
    for link in links:
        assert (DOCS.parent / link).is_file(), link
