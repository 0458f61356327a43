"""The documentation runs as written.

Every example in ``docs/*.md`` is executed and checked against the output the page shows:

- `````pycon`` blocks are doctests (one namespace per page, blocks in order);
- `````console`` blocks: each ``$ rfcheck ...`` line runs the command line tool in-process and
  its output must match the lines below it (``...`` matches anything, whitespace is normalised);
- `````python`` blocks whose first line is ``# name.py`` are files: written to the working folder
  (the example model must equal ``docs/examples/name.py``), and ``test_*.py`` files have their
  tests called;
- a block preceded by ``<!-- keep -->`` is shown as it is and not run (e.g. a pytest transcript).

Each page runs in a fresh temporary folder, which is also on ``sys.path``. Links to local files
and images (in the docs and in the README) must exist, and ``docs/make_figures.py`` must know
every figure in ``docs/figures``.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib.util
import io
import re
import shlex
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^(?P<keep><!-- keep -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.S | re.M)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
FILE_HEADER = re.compile(r"# (?P<name>[\w.]+\.py)")


def blocks(text: str):
    """(lang, body, keep, line number) of every fenced block."""
    for m in FENCE.finditer(text):
        yield m.group("lang"), m.group("body"), bool(m.group("keep")), text.count("\n", 0, m.start()) + 1


def run_pycon(body: str, globs: dict, name: str, line: int) -> None:
    test = doctest.DocTestParser().get_doctest(body, globs, name, name, line)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=out.write, clear_globs=False)
    globs.update(test.globs)
    assert runner.failures == 0, f"{name}, block at line {line}:\n{out.getvalue()}"


def run_console(body: str, name: str, line: int) -> int:
    """Run each ``$ rfcheck`` command; returns how many ran."""
    from crosscheck.cli import main

    checker = doctest.OutputChecker()
    commands: list[tuple[str, list[str]]] = []
    for text_line in body.splitlines():
        if text_line.startswith("$ "):
            commands.append((text_line[2:], []))
        elif commands:
            commands[-1][1].append(text_line)
    ran = 0
    for command, expected in commands:
        if not command.startswith("rfcheck "):
            continue
        got = io.StringIO()
        with contextlib.redirect_stdout(got), contextlib.redirect_stderr(got):
            main(shlex.split(command)[1:])
        want = "\n".join(expected) + "\n"
        assert checker.check_output(want, got.getvalue(), FLAGS), (
            f"{name}, block at line {line}: `{command}` printed\n{got.getvalue()}\ninstead of\n{want}"
        )
        ran += 1
    return ran


def run_file(body: str, name: str, line: int) -> None:
    header = FILE_HEADER.fullmatch(body.splitlines()[0])
    assert header, f"{name}, block at line {line}: a file block starts with '# name.py'"
    filename = header.group("name")
    Path(filename).write_text(body)
    example = DOCS / "examples" / filename
    if example.exists():
        shown = body.split("\n", 1)[1]
        assert shown == example.read_text(), f"{name}: the {filename} shown differs from docs/examples/{filename}"
    if filename.startswith("test_"):
        spec = importlib.util.spec_from_file_location(filename[:-3], filename)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tests = [getattr(module, t) for t in dir(module) if t.startswith("test_") and callable(getattr(module, t))]
        assert tests, f"{name}: {filename} has no tests"
        for test in tests:
            test()


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run_and_print_what_they_show(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("my_model", "test_my_model"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    globs: dict = {"__name__": f"docs.{page.stem}"}
    try:
        for lang, body, keep, line in blocks(page.read_text()):
            if keep:
                continue
            if lang == "pycon":
                run_pycon(body, globs, page.name, line)
            elif lang == "console":
                run_console(body, page.name, line)
            elif lang == "python" and FILE_HEADER.fullmatch(body.splitlines()[0] if body else ""):
                run_file(body, page.name, line)
    finally:
        plt.close("all")


def test_the_docs_have_examples_to_run():
    counts = {"pycon": 0, "console": 0}
    for page in PAGES:
        for lang, _body, keep, _ in blocks(page.read_text()):
            if lang in counts and not keep:
                counts[lang] += 1
    assert counts["pycon"] >= 10 and counts["console"] >= 4, counts
    for name in ("getting-started.md", "methods.md", "api.md", "conventions.md"):
        assert (DOCS / name).exists(), name


LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=[*(p.name for p in PAGES), "README.md"])
def test_local_links_and_images_exist(page):
    for m in LINK.finditer(page.read_text()):
        target = m.group("target").split("#", 1)[0]
        if not target or re.match(r"[a-z]+:", target):
            continue
        assert (page.parent / target).exists(), f"{page.name}: link to missing {target}"


def test_readme_shows_two_committed_figures():
    images = [m.group("target") for m in LINK.finditer((ROOT / "README.md").read_text()) if m.group(0).startswith("!")]
    assert len([i for i in images if i.startswith("docs/figures/")]) >= 2, images


def test_make_figures_knows_every_figure():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = {p.stem for p in (DOCS / "figures").glob("*.png")}
    assert committed == set(module.ALL), "docs/figures and docs/make_figures.py disagree"


def test_the_reason_table_of_methods_is_the_reason_enum():
    """methods.md lists every crosscheck.Reason code with its kind, and nothing else: the page
    cannot drift from the codes the verdict gives."""
    from crosscheck.reasons import Reason

    text = (DOCS / "methods.md").read_text()
    section = text.split("### Every reason crosscheck can give", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \| ([a-z_]+) \|", section, re.M)
    assert listed == [(r.value, r.kind) for r in Reason]


def test_make_bench_keeps_the_hand_written_parts_of_the_performance_page(tmp_path):
    """``make bench`` rewrites docs/performance.md: section 0's description and the notes it
    writes are the page's, and the discussion of the run between the markers survives a
    rewrite (before, the page's notes were newer than the generator's and a rewrite dropped
    them with the discussion)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run

    page = (ROOT / "docs" / "performance.md").read_text()
    assert run.SECTION_0.strip() in page and page.endswith(run.NOTES)
    kept = run.discussion(page)
    assert kept.startswith(run.DISCUSSION[0]) and kept.endswith(run.DISCUSSION[1]) and "Not met" in kept
    copy = tmp_path / "performance.md"
    copy.write_text(page)
    run.write_page(copy, "Machine: x\n\n### 0. t\n\n| a |\n|---|\n| 1 |\n\n### 1. u\n\n| b |\n")
    rewritten = copy.read_text()
    assert run.discussion(rewritten) == kept
    assert rewritten.index("| 1 |") < rewritten.index(kept) < rewritten.index("### 1. u")
