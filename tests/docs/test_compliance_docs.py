"""The compliance pages and the encryption guide cite tests as evidence; every citation must point at a real test.

A reference is ``tests/<path>.py`` (the file must exist) or ``tests/<path>.py::name`` (the file must define a
function ``name``, sync or async, at module level) or ``tests/<path>.py::Class::name`` (a method of that class).
A pytest parameter suffix such as ``[sqlite]`` or ``[sales_rep-contacts]`` is ignored.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPLIANCE_DIR = ROOT / "docs" / "compliance"
FRAMEWORK_PAGES = ("gdpr.md", "hipaa.md", "pci-dss.md", "soc2.md", "pipl-mlps.md")
EXTRA_PAGES = (ROOT / "docs" / "encryption.md", ROOT / "docs" / "deployment.md")

# tests/<path>.py, optionally ::name or ::Class::name, optionally a [param] suffix (ignored).
REFERENCE = re.compile(
    r"(?P<path>tests/[A-Za-z0-9_./-]+?\.py)"
    r"(?P<names>(?:::[A-Za-z_][A-Za-z0-9_]*)*)"
    r"(?:\[[^\]\s`|]*\])?"
)


@dataclass(frozen=True)
class Reference:
    """One citation of a test in a page."""

    page: str
    line: int
    path: str
    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line}:{self.path}{''.join('::' + name for name in self.names)}"


def pages() -> list[Path]:
    """Every page whose test citations are checked."""
    return sorted(COMPLIANCE_DIR.glob("*.md")) + [page for page in EXTRA_PAGES if page.exists()]


def references_in(text: str, page: str) -> list[Reference]:
    """The test citations in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in REFERENCE.finditer(line):
            names = tuple(name for name in match.group("names").split("::") if name)
            found.append(Reference(page, number, match.group("path"), names))
    return found


def all_references() -> list[Reference]:
    found = []
    for page in pages():
        found += references_in(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    return found


@functools.cache
def definitions(path: Path) -> dict[str, frozenset[str]]:
    """Module-level function names under ``""``, and each class's method names under the class name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    found: dict[str, frozenset[str]] = {"": frozenset(node.name for node in tree.body if isinstance(node, functions))}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            found[node.name] = frozenset(item.name for item in node.body if isinstance(item, functions))
    return found


def problem(reference: Reference) -> str | None:
    """Why ``reference`` does not point at a test, or None when it does."""
    target = (ROOT / reference.path).resolve()
    if ROOT / "tests" not in target.parents:
        return "points outside tests/"
    if not target.is_file():
        return "no such file"
    if not reference.names:
        return None
    defined = definitions(target)
    *classes, name = reference.names
    if len(classes) > 1:
        return "nested classes are not supported in references"
    scope = classes[0] if classes else ""
    if scope not in defined:
        return f"no class {scope} in the file"
    if name not in defined[scope]:
        return f"no function {name!r} in {'class ' + scope if scope else 'the module'}"
    return None


REFERENCES = all_references()


def test_every_framework_page_and_the_index_exist() -> None:
    for name in ("README.md", *FRAMEWORK_PAGES):
        assert (COMPLIANCE_DIR / name).is_file(), f"docs/compliance/{name} is missing"
    assert (ROOT / "docs" / "encryption.md").is_file()


def test_every_framework_page_cites_tests() -> None:
    cited = {reference.page for reference in REFERENCES if reference.names}
    for name in FRAMEWORK_PAGES:
        assert f"docs/compliance/{name}" in cited, f"docs/compliance/{name} cites no test function"
    assert "docs/encryption.md" in cited


def test_the_index_links_every_framework_page() -> None:
    index = (COMPLIANCE_DIR / "README.md").read_text(encoding="utf-8")
    for name in FRAMEWORK_PAGES:
        assert f"({name})" in index, f"docs/compliance/README.md does not link {name}"


@pytest.mark.parametrize("reference", REFERENCES, ids=[reference.label for reference in REFERENCES])
def test_cited_test_exists(reference: Reference) -> None:
    reason = problem(reference)
    assert reason is None, f"{reference.label}: {reason}"


def test_the_reference_parser() -> None:
    text = (
        "| a | `tests/unit/x/test_a.py::test_one[sqlite-sales_rep]` and tests/unit/test_b.py |\n"
        "see tests/unit/security/crypto/test_crypto_keys.py::TestDekCache::test_bounded, "
        "and `tests/integration/api/test_c.py::test_two`."
    )
    found = [(reference.path, reference.names) for reference in references_in(text, "page.md")]
    assert found == [
        ("tests/unit/x/test_a.py", ("test_one",)),
        ("tests/unit/test_b.py", ()),
        ("tests/unit/security/crypto/test_crypto_keys.py", ("TestDekCache", "test_bounded")),
        ("tests/integration/api/test_c.py", ("test_two",)),
    ]


def test_the_checker_catches_a_missing_test() -> None:
    real = Path(__file__).relative_to(ROOT).as_posix()
    assert problem(Reference("page.md", 1, real, ("test_the_checker_catches_a_missing_test",))) is None
    assert problem(Reference("page.md", 1, real, ("test_that_does_not_exist",))) is not None
    assert problem(Reference("page.md", 1, "tests/no/such_file.py", ())) == "no such file"
    assert problem(Reference("page.md", 1, "tests/../pyproject.py", ())) == "points outside tests/"
    keys = "tests/unit/security/crypto/test_crypto_keys.py"
    assert problem(Reference("page.md", 1, keys, ("TestDekCache", "test_bounded"))) is None
    assert problem(Reference("page.md", 1, keys, ("TestMissing", "test_bounded"))) is not None
