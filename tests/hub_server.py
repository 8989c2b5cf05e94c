"""A local stand-in for the Hugging Face Hub and for plain download URLs (tests only).

It answers what ``huggingface_hub`` 2.x asks (see docs/weights.md and the
project's hub-testing notes): ``HEAD``/``GET /{repo}/resolve/{revision}/{file}``
with ``X-Repo-Commit`` and ``ETag``, 404s typed by ``X-Error-Code``, and the four
calls a one-commit upload makes. Paths registered with :meth:`LocalHub.serve` are
plain files (the authors' upstream URLs). Every request is recorded; ``delay``
slows each body down and ``cut_short`` hangs up early, to exercise the clients.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/(?P<rev>[^/]+)$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up early is normal here
            super().handle_error(request, client_address)


class LocalHub:
    """``with LocalHub() as hub:`` serves on ``hub.url`` until the block ends."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, str] = {}
        self.plain: dict[str, bytes] = {}
        self.delay = 0.0  # seconds spent sending each body
        self.cut_short: int | None = None  # bytes of a body sent before hanging up
        self.cut_short_times = 1_000_000  # how many bodies are cut short
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), type("Handler", (_Handler,), {"hub": self}))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_file(self, repo_id: str, filename: str, data: bytes) -> None:
        with self._lock:
            self.repos.setdefault(repo_id, {})[filename] = data
            self.commits[repo_id] = hashlib.sha1(repr(sorted(self.repos[repo_id].items())).encode()).hexdigest()

    def serve(self, path: str, data: bytes) -> None:
        self.plain[path] = data

    def count(self, method: str, path_end: str = "") -> int:
        with self._lock:
            return sum(m == method and p.endswith(path_end) for m, p in self.requests)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._file(body=False)

    def do_GET(self) -> None:
        self._file(body=True)

    def _path(self) -> str:
        path = urlsplit(self.path).path
        with self.hub._lock:
            self.hub.requests.append((self.command, path))
        return path

    def _file(self, body: bool) -> None:
        path = self._path()
        m = _RESOLVE.match(path)
        if m is None:
            if path not in self.hub.plain:
                return self._send(404, b"not found")
            return self._send(200, self.hub.plain[path], body=body)
        repo, rev, name = m["repo"], unquote(m["rev"]), unquote(m["file"])
        if repo not in self.hub.repos:
            return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})
        commit = self.hub.commits[repo]
        if rev not in ("main", commit):
            return self._send(404, b"{}", {"X-Error-Code": "RevisionNotFound"})
        if name not in self.hub.repos[repo]:
            return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        data = self.hub.repos[repo][name]
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        self._send(200, data, {"X-Repo-Commit": commit, "ETag": etag}, body=body)

    def do_POST(self) -> None:
        path = self._path()
        payload = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if path == "/api/repos/create":
            req = json.loads(payload)
            repo = f"{req['organization']}/{req['name']}"
            self.hub.repos.setdefault(repo, {})
            return self._json({"url": f"{self.hub.url}/{repo}", "name": repo, "id": repo})
        if path == "/api/validate-yaml":
            return self._json({"errors": [], "warnings": []})
        m = _API.match(path)
        if m is None:
            return self._send(404, b"not found")
        if m["op"] == "preupload":
            files = json.loads(payload)["files"]
            return self._json(
                {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        for line in payload.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.hub.add_file(m["repo"], item["value"]["path"], base64.b64decode(item["value"]["content"]))
        commit = self.hub.commits[m["repo"]]
        self._json({"commitUrl": f"{self.hub.url}/{m['repo']}/commit/{commit}", "commitOid": commit})

    def _json(self, obj: object) -> None:
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None, body: bool = True) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not body:
            return
        end = len(data)
        with self.hub._lock:
            if self.hub.cut_short is not None and self.hub.cut_short_times > 0:
                self.hub.cut_short_times -= 1
                end = min(end, self.hub.cut_short)
                self.close_connection = True
        for i in range(0, end, 1 << 16):
            chunk = data[i : min(i + (1 << 16), end)]
            self.wfile.write(chunk)
            time.sleep(self.hub.delay * len(chunk) / len(data))
        self.wfile.flush()
