"""docs/security.md cannot drift from the code: the role matrix is the generator's output, and every command exists.

The matrix section sits between ``<!-- matrix:start -->`` and ``<!-- matrix:end -->``, each on a line of its own:
a blank line, exactly what ``python -m server.security.policy.matrix`` prints, a blank line (the blank lines keep
Markdown renderers from reading the HTML comments as part of a heading or table).

Every ``strongroom ...`` command in a fenced code block of docs/security.md and docs/audit.md must name a command
(and sub-command) that ``server.cli.build_parser()`` knows, and must parse with the options it shows. Shell
around the command is understood: ``echo pw | strongroom users create ...``, ``VAR=x strongroom init``, ``&&``,
``;``, ``&``, redirections (``> file``) and ``\\`` line continuations.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.cli import build_parser
from server.security.policy import matrix
from server.security.policy.compiler import build_enforcer
from server.security.policy.defaults import DEFAULT_POLICY, DEFAULT_ROLES, DEFAULT_SCOPES

ROOT = Path(__file__).resolve().parents[2]
SECURITY_DOC = ROOT / "docs" / "security.md"
COMMAND_DOCS = (SECURITY_DOC, ROOT / "docs" / "audit.md")
START, END = "<!-- matrix:start -->", "<!-- matrix:end -->"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_OPERATORS = frozenset({"|", "||", "&&", ";", "&", "(", ")"})
REDIRECTION_CHARS = frozenset("<>&")
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def generated_matrix() -> str:
    """What ``python -m server.security.policy.matrix`` prints: the review of the seeded defaults."""
    rows = matrix.access_review(build_enforcer(DEFAULT_POLICY), matrix.DEFAULT_ENTITIES, DEFAULT_SCOPES,
                                list(DEFAULT_ROLES))
    return matrix.render_markdown(rows)


def matrix_section(text: str) -> str:
    """The text between the matrix markers (each must occur exactly once, start before end)."""
    assert text.count(START) == 1, f"{START} must occur exactly once"
    assert text.count(END) == 1, f"{END} must occur exactly once"
    before_end = text.split(END, 1)[0]
    assert START in before_end, f"{START} must come before {END}"
    return before_end.split(START, 1)[1]


@dataclass(frozen=True)
class Command:
    """One ``strongroom`` invocation shown in a doc."""

    page: str
    line: int
    argv: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line}: strongroom {' '.join(self.argv)}"


def _segments(tokens: list[str]) -> list[list[str]]:
    """Split shell tokens into simple commands, dropping redirections and their targets."""
    segments: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in SHELL_OPERATORS:
            segments.append([])
        elif set(token) <= REDIRECTION_CHARS:
            skip_next = True  # "> file", ">> file", ">& 2": the next token is the target, not an argument
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def commands_in(text: str, page: str) -> list[Command]:
    """Every ``strongroom`` command in the fenced code blocks of ``text``."""
    found: list[Command] = []
    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        logical, start = "", first_line
        for offset, raw in enumerate(block.group(1).splitlines()):
            if not logical:
                start = first_line + offset
            if raw.rstrip().endswith("\\"):
                logical += raw.rstrip()[:-1] + " "
                continue
            line, logical = logical + raw, ""
            if "strongroom" not in line:
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            for segment in _segments(list(lexer)):
                while segment and ENV_ASSIGNMENT.match(segment[0]):
                    segment = segment[1:]
                if segment and Path(segment[0]).name == "strongroom":
                    found.append(Command(page, start, tuple(segment[1:])))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def problem(command: Command, parser: argparse.ArgumentParser) -> str | None:
    """Why ``command`` is not a command the parser knows, or None."""
    words = [word for word in command.argv if not word.startswith("-")]
    level: argparse.ArgumentParser = parser
    path: list[str] = []
    while (choices := _subcommands(level)):
        if not words:
            return f"'strongroom {' '.join(path)}' needs one of: {', '.join(sorted(choices))}"
        word = words.pop(0)
        if word not in choices:
            return f"'strongroom {' '.join([*path, word])}' is not a command (known: {', '.join(sorted(choices))})"
        level, path = choices[word], [*path, word]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(list(command.argv))
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return errors.getvalue().strip().splitlines()[-1]
    return None


def documented_commands() -> list[Command]:
    found: list[Command] = []
    for page in COMMAND_DOCS:
        if page.exists():
            found += commands_in(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    return found


COMMANDS = documented_commands()


def test_the_matrix_section_is_the_generated_matrix() -> None:
    section = matrix_section(SECURITY_DOC.read_text(encoding="utf-8"))
    expected = "\n\n" + generated_matrix() + "\n"  # end of the start marker's line, blank line, matrix, blank line
    assert section == expected, (
        "docs/security.md's role matrix differs from the seeded policy; replace the text between the markers "
        "with a blank line, the output of `python -m server.security.policy.matrix`, and a blank line"
    )


def test_the_generator_is_what_the_module_prints(capsys: pytest.CaptureFixture[str]) -> None:
    matrix._main()
    assert capsys.readouterr().out == generated_matrix()


def test_the_doc_shows_commands() -> None:
    pages = {command.page for command in COMMANDS}
    assert "docs/security.md" in pages
    names = {command.argv[:2] for command in COMMANDS}
    for expected in (("roles", "create"), ("policy", "add"), ("policy", "scope"), ("users", "create"),
                     ("access-review",)):
        assert any(name[: len(expected)] == expected for name in names), f"docs show no `strongroom {expected}`"


@pytest.mark.parametrize("command", COMMANDS, ids=[command.label for command in COMMANDS])
def test_documented_command_exists(command: Command) -> None:
    reason = problem(command, build_parser())
    assert reason is None, f"{command.label}: {reason}"


def test_the_command_checker() -> None:
    text = (
        "prose strongroom nope\n"
        "```bash\n"
        "export STRONGROOM_DATA_DIR=$(mktemp -d)\n"
        "echo 'pw' | STRONGROOM_PORT=1 .venv/bin/strongroom users create a --role sales_rep --password-stdin\n"
        "strongroom audit public-key > audit.pem && strongroom serve --port 8000 &\n"
        "strongroom policy add r 'contact.*' read \\\n"
        "  --deny  # a comment\n"
        "strongroom frobnicate\n"
        "strongroom users explode x\n"
        "strongroom roles create r\n"
        "```\n"
    )
    found = commands_in(text, "page.md")
    assert [(c.line, c.argv) for c in found] == [
        (4, ("users", "create", "a", "--role", "sales_rep", "--password-stdin")),
        (5, ("audit", "public-key")),
        (5, ("serve", "--port", "8000")),
        (6, ("policy", "add", "r", "contact.*", "read", "--deny")),
        (8, ("frobnicate",)),
        (9, ("users", "explode", "x")),
        (10, ("roles", "create", "r")),
    ]
    parser = build_parser()
    verdicts = [problem(command, parser) for command in found]
    assert verdicts[:4] == [None, None, None, None]
    assert "not a command" in (verdicts[4] or "")
    assert "not a command" in (verdicts[5] or "")
    assert "--description" in (verdicts[6] or "")
