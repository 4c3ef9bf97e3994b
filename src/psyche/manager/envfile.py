"""Parse a .env file once with python-dotenv's parser, with line numbers, rejecting what it would skip."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from psyche.boundedread import ENV_FILE_MAX_BYTES, InputRefused, read_bounded, size_text
from psyche.errors import ConfigError
from psyche.manager.constants import is_secret_name

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_BEFORE_EQUALS = re.compile(r"\s*(?:export\s+)?'?([A-Za-z_][A-Za-z0-9_]*)'?\s*=")


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One variable as written in the file: its unquoted value and the line its name is on."""

    value: str
    line: int


def read_env_file(path: Path) -> dict[str, FileEntry]:
    """Parse a .env file once with python-dotenv's parser, rejecting what it would silently skip.

    Raises:
        ConfigError: the file is missing, unreadable, too big or not UTF-8, or a line has a bad name or
            quoting (the message names the line and the fix).
    """
    try:
        text = read_bounded(path, ENV_FILE_MAX_BYTES).decode("utf-8")
    except InputRefused as exc:
        raise ConfigError(
            f"--env-file {path}: {exc}; pass a .env text file of at most {size_text(ENV_FILE_MAX_BYTES)}"
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            f"--env-file {path}: no such file; pass the path of an existing .env file"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--env-file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"--env-file {path}: cannot read it ({reason}); check the path and its permissions"
        ) from None
    # Lazy: python-dotenv costs ~25 ms of import time that `run-manager --help` must not pay.
    from dotenv.parser import parse_stream

    entries: dict[str, FileEntry] = {}
    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        if binding.key is None and not binding.error:
            continue  # blank line or comment
        # dotenv marks the start of the whitespace before a binding; count it to get the key's own line.
        stripped = raw.lstrip()
        line = binding.original.line + raw[: len(raw) - len(stripped)].count("\n")
        first_line = stripped.splitlines()[0] if stripped else ""
        at = f"{path}:{line}"
        if binding.error or binding.value is None:
            _raise_unparsable(at, first_line)
        assert binding.key is not None and binding.value is not None
        key, value = binding.key, binding.value
        if not _NAME.fullmatch(key):
            raise ConfigError(
                f"{key!r} in {at}: not a valid variable name; use letters, digits and _ (no leading digit)"
            )
        after_equals = stripped.split("=", 1)[1].lstrip(" \t")
        if not after_equals.startswith(("'", '"')) and value.endswith(("'", '"')):
            raise ConfigError(
                f"{key} in {at}: unbalanced quote at the end of the value; "
                f"wrap the whole value in matching quotes or remove the stray quote"
            )
        if not after_equals.startswith(("'", '"')) and value.startswith("`"):
            raise ConfigError(
                f"{key} in {at}: unknown quoting (backticks); use \"double\" or 'single' quotes, or none"
            )
        entries.pop(key, None)  # a repeated key keeps the last value, as dotenv and docker do
        entries[key] = FileEntry(value, line)
    return entries


def _raise_unparsable(at: str, first_line: str) -> None:
    if "=" not in first_line:
        token = first_line.split()[0] if first_line.split() else ""
        # Echo the text only when it looks like a name: a pasted key on its own line must stay hidden.
        if _NAME.fullmatch(token) and not is_secret_name(token) and len(token) <= 64:
            raise ConfigError(
                f"{token} in {at}: no '=' on this line; write {token}=<value> or comment it out with #"
            )
        raise ConfigError(f"{at}: a line without '='; write NAME=<value> or comment it out with #")
    match = _KEY_BEFORE_EQUALS.match(first_line)
    name = match.group(1) if match else "a variable"
    raise ConfigError(
        f"{name} in {at}: unknown or unbalanced quoting; "
        f"use matching \"double\" or 'single' quotes around the whole value, or none"
    )
