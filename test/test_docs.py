"""The user-facing docs stay pages for users; the history of how settings were chosen lives in the log.

User pages: README.md, docs/*.md (docs/log/ is the dated measurement log and is not one of them) and
the model card. They name no "issue N", "session N" or "stop N" (our own bookkeeping, meaningless
to a user: a date says when), README.md and docs/*.md stay short enough to read (the model card
keeps every score and is exempt), and every relative link of every page, the log's included,
reaches a file and, with an anchor, one of its headings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MODEL_CARD = REPO / "coarse_loftr_ros" / "models" / "MODEL_CARD.md"

# README.md and every docs/*.md page: at most this many lines. About 200 is the aim (the README
# about 180); measurements, tables of earlier runs and settings tried belong in docs/log/.
LINE_LIMIT = 220

USER_PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md")), MODEL_CARD]
SHORT_PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
LOG_PAGES = sorted((DOCS / "log").glob("*.md"))

# "issue 22", "Session 28's", "stop 27", "issue #16", "sessions 27/28"; not "rosidl_python#141".
BOOKKEEPING = re.compile(r"\b(?:issues?|sessions?|stops?)\s*#?\s*\d+", re.IGNORECASE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def bookkeeping_references(text: str) -> list[str]:
    return [match.group(0) for match in BOOKKEEPING.finditer(text)]


def test_the_pattern_finds_bookkeeping_and_nothing_else():
    assert bookkeeping_references("as issue 22's marks said; Session 28 and stop 27; issue #16") == [
        "issue 22", "Session 28", "stop 27", "issue #16"]
    assert bookkeeping_references("sessions 27/28, Issues 3") == ["sessions 27", "Issues 3"]
    assert bookkeeping_references("rosidl_python#141; stop the node; kill %1; runs/cost_stop2.json; 2 stops") == []


@pytest.mark.parametrize("path", USER_PAGES, ids=_name)
def test_user_pages_name_no_issue_session_or_stop_numbers(path):
    found = [f"line {number}: {hit!r}" for number, line in enumerate(path.read_text().splitlines(), 1)
             for hit in bookkeeping_references(line)]
    assert not found, f"{_name(path)} names our bookkeeping; say the date instead (git log -S finds it): {found}"


@pytest.mark.parametrize("path", SHORT_PAGES, ids=_name)
def test_readme_and_docs_pages_stay_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= LINE_LIMIT, (
        f"{_name(path)} has {lines} lines, more than {LINE_LIMIT}: keep how to do it, the reference and "
        "today's figures with their command; move earlier runs and settings tried to docs/log/")


def test_the_log_exists_and_its_index_names_every_page():
    index = (DOCS / "log" / "README.md").read_text()
    pages = [p for p in LOG_PAGES if p.name != "README.md"]
    assert pages, "docs/log/ holds no dated page"
    for page in pages:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\.md", page.name), f"{_name(page)}: log pages are named by date"
        assert f"({page.name})" in index, f"docs/log/README.md does not link {page.name}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen = set(), {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            slug = _slug(line.lstrip("#"))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_slug_follows_github():
    assert _slug(" 10:21 How far the numbers move by RANSAC's luck alone") == "1021-how-far-the-numbers-move-by-ransacs-luck-alone"
    assert _slug(" A video with ground-truth poses (`eval --sequence`)") == "a-video-with-ground-truth-poses-eval---sequence"


@pytest.mark.parametrize("path", USER_PAGES + LOG_PAGES, ids=_name)
def test_relative_links_reach_a_file_and_heading(path):
    broken = []
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(target)
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(target)
    assert not broken, f"{_name(path)}: links that lead nowhere: {broken}"
