"""What an editor shows while a user writes mico.yaml: the YAML language server VS Code's YAML
extension runs (hack/yaml-language-server pins 2.0.0), driven over its stdio protocol, with the
schema found through the example's relative modeline."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLE, ROOT, node_tool


class LanguageServer:
    def __init__(self, home: Path) -> None:
        server = home / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
        self.process = subprocess.Popen(
            ["node", str(server), "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.ids = iter(range(1, 1_000_000))
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        length = 0
        while line := self.process.stdout.readline().strip():
            name, value = line.decode().split(":", 1)
            if name.lower() == "content-length":
                length = int(value)
        message: dict[str, Any] = json.loads(self.process.stdout.read(length))
        return message

    def request(self, method: str, params: dict[str, Any]) -> Any:
        ident = next(self.ids)
        self.send({"id": ident, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == ident and "method" not in message:
                return message.get("result")
            self.answer(message)

    def answer(self, message: dict[str, Any]) -> None:
        """The server's own requests (its settings) and notifications (diagnostics)."""
        if message.get("method") == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        elif message.get("method") == "workspace/configuration":
            items = message["params"]["items"]
            self.send(
                {
                    "id": message["id"],
                    "result": [{"validate": True, "hover": True, "completion": True}] * len(items),
                }
            )
        elif "id" in message and "method" in message:
            self.send({"id": message["id"], "result": None})

    def open(self, path: Path, text: str) -> str:
        uri = path.as_uri()
        self.send(
            {
                "method": "textDocument/didOpen",
                "params": {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}},
            }
        )
        return uri

    def diagnostics_of(self, uri: str) -> list[dict[str, Any]]:
        while uri not in self.diagnostics:
            self.answer(self.receive())
        return self.diagnostics[uri]


@pytest.fixture(scope="module")
def server() -> Iterator[LanguageServer]:
    lsp = LanguageServer(node_tool("yaml-language-server"))
    lsp.request(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": ROOT.as_uri(),
            "capabilities": {
                "textDocument": {
                    "hover": {"contentFormat": ["markdown"]},
                    "completion": {"completionItem": {"documentationFormat": ["markdown"]}},
                }
            },
        },
    )
    lsp.send({"method": "initialized", "params": {}})
    settings = {"yaml": {"validate": True, "hover": True, "completion": True}}
    lsp.send({"method": "workspace/didChangeConfiguration", "params": {"settings": settings}})
    yield lsp
    lsp.process.kill()
    lsp.process.wait()


def position(text: str, line_containing: str, word: str) -> dict[str, int]:
    lines = text.splitlines()
    line = next(i for i, content in enumerate(lines) if line_containing in content)
    return {"line": line, "character": lines[line].index(word) + 1}


def test_hover_explains_a_field(server: LanguageServer) -> None:
    text = EXAMPLE.read_text()
    uri = server.open(EXAMPLE, text)
    hover = server.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": position(text, "replicas: 2", "replicas")},
    )
    assert "Pods to run; entries that share an instance add theirs up" in hover["contents"]["value"]
    assert server.diagnostics_of(uri) == []  # the example is valid for the editor too


def test_completion_offers_fields_with_their_help_and_a_typo_is_flagged(server: LanguageServer) -> None:
    draft = EXAMPLE.parent / "draft-editor-test.mico.yaml"  # beside the example: its modeline resolves
    text = EXAMPLE.read_text().replace("        replicas: 2\n", "        replcas: 2\n        \n", 1)
    uri = server.open(draft, text)
    at = position(text, "replcas: 2", "replcas")
    completion = server.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": at["line"] + 1, "character": 8}},
    )
    items = {item["label"]: item for item in (completion or {}).get("items", [])}
    assert {"replicas", "interfaceConnections", "topics", "instance"} <= items.keys()
    documentation = items["interfaceConnections"].get("documentation") or {}
    assert "environment variable" in (
        documentation.get("value", "") if isinstance(documentation, dict) else documentation
    )
    problems = server.diagnostics_of(uri)
    assert any("replcas" in p["message"] and p["range"]["start"]["line"] == at["line"] for p in problems), (
        problems
    )
