"""The README and the pages of docs/ stay true: the README fits a first read, every link resolves (files and
headings), every page is reachable from the README, every `make` command named exists, and every test a
guarantee names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.table import TEMPLATE

ROOT = TEMPLATE.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES]
LINK = re.compile(r"\]\(([^)\s]+)\)")
MAKE = re.compile(r"(?:`|^)make ([a-z][a-z0-9-]*)", re.MULTILINE)  # in code: `make run`, or a command line
TEST_PATH = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)?)")
README_MOST_LINES = 250


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation gone but hyphens, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in document.read_text().splitlines() if line.startswith("#")}


def targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_the_readme_fits_a_first_read():
    assert len(README.read_text().splitlines()) <= README_MOST_LINES


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_link_resolves(document):
    broken = []
    for link in LINK.findall(document.read_text()):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (document.parent / path).resolve() if path else document
        if not target.exists() or (anchor and target.suffix == ".md" and anchor not in anchors(target)):
            broken.append(link)
    assert broken == []


def test_every_page_is_reachable_from_the_readme():
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in LINK.findall(README.read_text())}
    assert [page.name for page in PAGES if page.resolve() not in linked] == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_make_command_named_exists(document):
    named = set(MAKE.findall(document.read_text()))
    assert named - targets() == set()


def test_every_test_a_guarantee_names_exists():
    missing = []
    for path, name in TEST_PATH.findall((ROOT / "docs" / "guarantees.md").read_text()):
        source = ROOT / path
        if not source.is_file() or (name and f"def {name[2:]}(" not in source.read_text()):
            missing.append(path + name)
    assert missing == []
