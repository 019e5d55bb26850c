"""References resolve: nothing cites a file outside the repository, and every relative Markdown link exists.

A fresh clone holds only the repository, so a citation of the design specifications that lived beside it
("spec Sec. 3.8", "sta-ipcon.md", "shared/specs/...") cannot be followed: the text must say the fact itself.
Source tags [S<n>] are fine when docs/xca-synth-sources.md lists them; seed-paper citations ("seed paper
Sec. III-B", "Li et al. Sec. 2.2") and the real-data location ../shared/data/real are fine too.

In ``.py`` files only comments and string literals are read (code such as ``b.spec.name`` is not prose).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from xcalab.config import REPO_ROOT

#: Where citations are checked: folders (every text file below them) and single files, relative to the repository.
ROOTS: tuple[str, ...] = ("xcalab", "benchmarks", "tests", "docs", "notebooks", "README.md", "data/weights/README.md",
                          "figures")
#: Which files under ROOTS are read (figures/ holds images and tables: only its Markdown is prose).
TEXT_SUFFIXES = (".py", ".md", ".txt", ".cfg", ".toml", ".yaml", ".yml", ".json", ".jsonl", ".ipynb")
ONLY_MARKDOWN = ("figures",)
#: Markdown files whose relative links must resolve.
LINKED_DOCS: tuple[str, ...] = ("README.md", "docs/*.md")

SOURCES_DOC = REPO_ROOT / "docs" / "xca-synth-sources.md"
#: Files whose arabic section numbers are a seed paper's (Li et al., seed paper 003, Secs. 2.2-2.3), not a spec's.
PAPER_SECTIONS = ("xcalab/models/self_attention_refinement.py",)

#: (what, pattern): citations that point outside the repository.
PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("a specification file", re.compile(
        r"\b(?:sta-ipcon|actionformer-gaf-evaluator|xca-simulation|notebooks|browser-test)\.md\b", re.I)),
    ("the shared specs / seeds folders", re.compile(r"\bshared/(?:specs|seeds)\b")),
    ("the design notes outside the repository", re.compile(r"\bDESIGN\.md\b")),
    # "spec", "specs", "spec's" as a word; not specify / BranchSpec / b.spec.name / spec_from_file_location / spec(
    ("the word spec", re.compile(r"(?<![\w.])specs?(?:'s)?(?![\w(\[=]|\.\w)", re.I)),
    ("a section sign", re.compile(r"§\s*\d")),
)
#: A numbered section without a paper: "Sec. 5.3", "Secs. 2.2-2.3" (seed papers use roman numbers: Sec. III-B).
BARE_SECTION = re.compile(r"\bSecs?\.\s*\d")
BRACKETS = re.compile(r"\[([^\[\]\n]*)\]")
SOURCE_TAG = re.compile(r"(?<![\w.])S(\d+[a-z]?)\b")


def known_tags(doc: Path = SOURCES_DOC) -> set[str]:
    """The source tags docs/xca-synth-sources.md lists, as "S3", "S7b" (entries start with **[S<n>]**)."""
    return {f"S{t}" for t in re.findall(r"\*\*\[S(\d+[a-z]?)\]\*\*", doc.read_text(encoding="utf-8"))}


def citations(line: str, tags: set[str], paper_sections: bool = False) -> list[str]:
    """What in one line of prose cites something outside the repository (empty: nothing)."""
    found = [f"{what}: {m.group(0)!r}" for what, pattern in PATTERNS for m in pattern.finditer(line)]
    if not paper_sections:
        found += [f"a section of no named paper: {m.group(0)!r}" for m in BARE_SECTION.finditer(line)]
    for bracket in BRACKETS.finditer(line):
        found += [f"source tag S{t} not in docs/xca-synth-sources.md" for t in SOURCE_TAG.findall(bracket.group(1))
                  if f"S{t}" not in tags]
    return found


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the prose of a file: comments and strings of Python, every line of the rest."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        return list(enumerate(text.splitlines(), 1))
    lines = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            lines += [(tok.start[0] + k, part) for k, part in enumerate(tok.string.splitlines())]
    return lines


def checked_files() -> list[Path]:
    """Every text file under ROOTS, this test excluded."""
    files = []
    for root in ROOTS:
        path = REPO_ROOT / root
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        suffixes = (".md",) if root in ONLY_MARKDOWN else TEXT_SUFFIXES
        files += [p for p in candidates if p.suffix in suffixes and "__pycache__" not in p.parts]
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def test_no_citation_points_outside_the_repository():
    tags = known_tags()
    problems = []
    for path in checked_files():
        rel = path.relative_to(REPO_ROOT).as_posix()
        for number, line in prose_lines(path):
            problems += [f"{rel}:{number}: {c}" for c in citations(line, tags, rel in PAPER_SECTIONS)]
    assert not problems, "citations a fresh clone cannot follow:\n" + "\n".join(problems)


def test_the_simulator_tags_are_all_listed():
    used = set()
    for path in (REPO_ROOT / "xcalab" / "data" / "synth").glob("*.py"):
        for _, line in prose_lines(path):
            for bracket in BRACKETS.finditer(line):
                used |= {f"S{t}" for t in SOURCE_TAG.findall(bracket.group(1))}
    assert used and used <= known_tags()


@pytest.mark.parametrize("line", [
    "the training step (spec Sec. 3.8)",
    "(spec sta-ipcon.md Sec. 2.3)",
    "Spec: ``shared/specs/xca-simulation.md``",
    "see actionformer-gaf-evaluator.md Sec. 1.2",
    "multipliers around the spec's defaults",
    "the Sec. 5.3 proxy statistics",
    "as the ActionFormer spec counts",
    "peak speed [S38] and [S99: 1-2]",
    "what DESIGN.md says",
])
def test_the_matcher_finds_citations(line):
    assert citations(line, {"S38"})


@pytest.mark.parametrize("line", [
    "specify the window; respectively",
    "seed paper Sec. III-B, eq. 10 (Wang et al., seed paper 002)",
    "if b.spec.name == name: spec_from_file_location(...)",
    "real cines in ../shared/data/real, skipped when absent",
    "Finet's law [S3]; an array [S, K]; BranchSpec",
])
def test_the_matcher_passes_innocent_text(line):
    assert citations(line, {"S3"}) == []


def test_paper_sections_pass_where_a_paper_is_cited():
    assert citations("TPP (Sec. 2.3)", set(), paper_sections=True) == []
    assert citations("TPP (Sec. 2.3)", set())


def _markdown_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every [text](target) outside fenced code blocks."""
    links, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            links += [(number, m.group(1)) for m in re.finditer(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line)]
    return links


def test_relative_markdown_links_resolve():
    docs = sorted({p for pattern in LINKED_DOCS for p in REPO_ROOT.glob(pattern)})
    assert REPO_ROOT / "README.md" in docs and SOURCES_DOC in docs
    broken = []
    for doc in docs:
        for number, target in _markdown_links(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # http:, https:, mailto:, an anchor on the same page
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.exists() or not path.is_relative_to(REPO_ROOT.resolve()):
                broken.append(f"{doc.relative_to(REPO_ROOT)}:{number}: {target}")
    assert not broken, "links to files that are not in the repository:\n" + "\n".join(broken)


def test_the_link_finder():
    text = "see [a](docs/a.md#x) and ![fig](figures/f.png)\n```\n[not](a link)\n```\n[web](https://x.org)"
    assert _markdown_links(text) == [(1, "docs/a.md#x"), (1, "figures/f.png"), (5, "https://x.org")]
