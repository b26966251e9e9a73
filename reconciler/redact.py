"""Credentials never reach a log line, an error message or the history."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(://)[^/@\s]*@")


def redact(text: str) -> str:
    """Hide the user info of every URL in `text` (https://user:token@host -> https://***@host)."""
    return _USERINFO.sub(r"\1***@", text)
