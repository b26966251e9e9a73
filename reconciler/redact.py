"""Credentials never reach a log line, an error message or the history.

Two forms carry them: a URL's user info (`https://user:token@host`, also when a password holds
spaces, newlines or '@') and scp-like git locations (`user:password@host:path`). Plain text
such as `bob@example.com` or `git@github.com:org/repo` is left alone.
"""

from __future__ import annotations

import re

#: Where a URL's authority ends; quotes end it too, as messages quote values.
_AUTHORITY_END = re.compile(r"[/?#'\"`<>]")
#: How far after `://` user info is looked for, so the cost stays linear.
_WINDOW = 4096
_SCP_PASSWORD = re.compile(r"(?<![\w.~+-])[\w.~+-]+:[^\s@/'\":]+@(?=[A-Za-z0-9][A-Za-z0-9.-]*:)")


def redact(text: str) -> str:
    """Hide credentials (https://user:token@host -> https://***@host, u:pw@h:path -> ***@h:path)."""
    if "@" not in text:
        return text
    return _redact_user_info(_SCP_PASSWORD.sub("***@", text))


def _redact_user_info(text: str) -> str:
    parts: list[str] = []
    done = 0
    found = text.find("://")
    while found >= 0:
        start = found + 3
        found = text.find("://", start)
        if start < done:
            continue  # inside user info already hidden
        limit = min(len(text), start + _WINDOW)
        end = _AUTHORITY_END.search(text, start, limit)
        at = text.rfind("@", start, end.start() if end else limit)
        if at < start:
            continue
        info = text[start:at]
        words = info.split()
        # "https://host is down, ask bob@corp" has no user info; a password with a space
        # ("https://u:pa ss@h") shows itself by the ':' before its first space
        if len(words) != 1 and not (words and ":" in words[0] and not info[0].isspace()):
            continue
        parts += [text[done:start], "***"]
        done = at
    return "".join(parts) + text[done:]
