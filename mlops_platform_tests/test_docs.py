"""The README stays short and its links and the docs' links lead somewhere; the documented
environment table is the code's."""

import re
from pathlib import Path

import pytest

from mlops_platform.settings import environment_table
from mlops_platform_tests.checkout import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_the_readme_reads_in_minutes():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 250


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text()), f"{page.name}: no heading for {target}"


def test_no_issue_numbers_or_run_narrative_in_the_docs():
    for page in DOCS:
        text = page.read_text()
        assert not re.search(r"\bissue #?\d+|#\d{1,3}\b(?!-)", text, re.IGNORECASE), page.name
        assert "design card" not in text.lower(), page.name


def test_the_documented_environment_table_is_the_codes():
    """docs/operations.md shows `settings.ENVIRONMENT` as it is."""
    assert environment_table() in (REPO_ROOT / "docs" / "operations.md").read_text()
