"""The one console facade: status and logs to stderr, data to stdout, styles and tables in one place."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Literal

from rich.console import Console
from rich.text import Text

from psyche.manager.constants import AppEnvVars

STYLES = {
    "error": "bold red",
    "warning": "yellow",
    "info": "",
    "success": "green",
    "hint": "dim",
    "header": "bold",
}


def _no_color(environ: Mapping[str, str]) -> bool:
    # https://no-color.org: any non-empty value disables colour.
    return bool(environ.get(AppEnvVars.NO_COLOR))


def _in_ci(environ: Mapping[str, str]) -> bool:
    return environ.get(AppEnvVars.CI, "").lower() not in ("", "0", "false")


class UI:
    """Render messages for people (stderr) and data for programs (stdout)."""

    def __init__(self, err: Console, out: Console, *, interactive: bool) -> None:
        self.err = err
        self.out = out
        self.interactive = interactive

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> UI:
        """Consoles for the real process; NO_COLOR and CI come from the injected environment."""
        color: Literal["auto"] | None = None if _no_color(environ) else "auto"
        env = dict(environ)
        err = Console(file=stderr, stderr=stderr is None, color_system=color, highlight=False, _environ=env)
        out = Console(file=stdout, color_system=color, highlight=False, _environ=env)
        interactive = err.is_terminal and not _in_ci(environ)
        return cls(err, out, interactive=interactive)

    @classmethod
    def for_tests(cls, width: int = 100) -> tuple[UI, io.StringIO, io.StringIO]:
        """A deterministic UI writing plain text into two StringIO buffers (out, err)."""
        out_buf, err_buf = io.StringIO(), io.StringIO()
        err = Console(file=err_buf, width=width, color_system=None, highlight=False)
        out = Console(file=out_buf, width=width, color_system=None, highlight=False)
        return cls(err, out, interactive=False), out_buf, err_buf

    def _line(self, label: str, style: str, message: str) -> None:
        text = Text()
        if label:
            text.append(label, style=STYLES[style])
            text.append(" ")
        text.append(message)
        # soft_wrap: a message stays one line however narrow the terminal, so it can be grepped and copied.
        self.err.print(text, soft_wrap=True)

    def error(self, message: str, hint: str | None = None) -> None:
        """`Error: <message>` and, when given, `hint: <hint>` on stderr."""
        self._line("Error:", "error", message)
        if hint:
            self._line("hint:", "hint", hint)

    def warning(self, message: str) -> None:
        """`Warning: <message>` on stderr."""
        self._line("Warning:", "warning", message)

    def info(self, message: str) -> None:
        """A plain status line on stderr."""
        self._line("", "info", message)

    def success(self, message: str) -> None:
        """A status line marking something done, on stderr."""
        self._line("✓", "success", message)

    def data(self, text: str) -> None:
        """Program-readable output on stdout, printed verbatim (no markup, no wrapping)."""
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
    ) -> None:
        """Aligned plain-text columns on stdout; cells are never markup, never wrapped nor truncated."""
        # Not rich.Table: it folds or drops cells to fit the terminal; pubkeys and URLs must stay whole.
        widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
        if title:
            self.out.print(Text(title, style=STYLES["header"]), soft_wrap=True)
        header = Text("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        header.stylize(STYLES["header"])
        self.out.print(header, soft_wrap=True)
        for row in rows:
            line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            self.out.print(Text(line), soft_wrap=True)

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner while a step runs, on a terminal; a single line otherwise (pipes, CI, tests)."""
        if not self.interactive:
            self.info(message)
            yield
            return
        with self.err.status(Text(message)):
            yield

    def exception(self, *, show_locals: bool) -> None:
        """The current exception as a rich traceback on stderr (for bugs, not for RunManagerError)."""
        import click

        self.err.print_exception(show_locals=show_locals, suppress=[click])
