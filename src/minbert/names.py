"""The one rule for every name minbert turns into a file or directory name: a run's `name`, task names (`tasks.X`),
a data spec's `prediction_file`, a tune study, an ensemble's or soup's `--name`, a sweep's variants and ensemble.

A name is one path component from a safe alphabet: ASCII letters, digits, `.`, `_` and `-`, starting with a letter or
digit, at most 64 characters. So it can never be a path (`/abs/x`, `../x`), `.` or `..`, a hidden file (minbert's
own lock files are `.NAME.lock`), an option (`-x`), markup, or too long for the file system: 64 characters leave
more than 150 of a file name's 255 bytes for what minbert appends (`-dev-details.jsonl`, `-quick`, `-best`, a
lock's `.holder`, an atomic write's `.PID.tmp`) and keep names readable in tables and reports.
"""

from __future__ import annotations

import re

from minbert.errors import ConfigError

MAX_NAME_LENGTH = 64
NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}")
RULE = (f"a name is 1 to {MAX_NAME_LENGTH} ASCII letters, digits, '.', '_' or '-', starting with a letter or digit "
        "(it becomes a file or directory name)")


def shown(value: str) -> str:
    """The value for a message: in full when short, else its ends and its length."""
    return repr(value) if len(value) <= 60 else f"{value[:40]!r}...{value[-12:]!r} ({len(value)} characters)"


def check_name(value: str, key: str, suffix: str = "") -> str:
    """`value` if it follows the rule, else a ConfigError naming `key`. `suffix`: what minbert appends to make
    another name from it (a study's best config is STUDY-best), which must fit the rule too."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(f"{key} = {shown(str(value))}: {RULE}")
    if len(value) + len(suffix) > MAX_NAME_LENGTH:
        raise ConfigError(f"{key} = {shown(value)}: at most {MAX_NAME_LENGTH - len(suffix)} characters here, so "
                          f"that the name minbert makes from it with {suffix!r} appended is at most {MAX_NAME_LENGTH}")
    return value
