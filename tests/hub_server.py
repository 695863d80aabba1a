"""A fake Hugging Face Hub on 127.0.0.1, so tests drive the real `huggingface_hub.HfApi` client offline.

It implements only the routes huggingface_hub 2.4 calls for `whoami`, `create_repo`, `create_branch`,
`upload_folder` of small files (always inline, never LFS/xet; both the hf_xet pipeline and the plain
`create_commit` path, with or without `create_pr`) and `add_collection_item`. Anything else answers
404 naming the route, so a new client call shows up as a clear test failure, not a silent pass.
Usage: `hub_env(monkeypatch, tmp_path, hub.url)`, then `HfApi(endpoint=hub.url, token=hub.token)`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO = r"(?P<repo>[^/]+/[^/]+)"
WHOAMI = {"name": "tester", "type": "user", "orgs": [], "auth": {"accessToken": {"role": "write"}}}


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1: what the client compares with its local file to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    """The one date format `huggingface_hub.utils.parse_datetime` reads."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def hub_env(monkeypatch, home: Path, url: str | None = None) -> None:
    """Let the client reach the fake hub (and only it), without the user's token or cache.

    huggingface_hub reads these env vars once, at import, into `constants`, and checks `constants.HF_HUB_OFFLINE`
    per request: patch the constants, not just the env. Telemetry off also stops the user-agent code from
    fetching `{ENDPOINT}/api/agent-harnesses` from the real Hub.
    """
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN", "HF_ENDPOINT",
                 "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    if url is not None:  # stray calls that ignore `HfApi(endpoint=...)` land here, not on huggingface.co
        monkeypatch.setattr(constants, "ENDPOINT", url)


class HubError(Exception):
    """An HTTP error answer; `code` goes into X-Error-Code, which the client maps to its error classes."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class FakeHub:
    """In-memory repos, refs and collections behind a ThreadingHTTPServer in a daemon thread."""

    def __init__(self, token: str = "hf_test_token"):
        self.token = token
        self.url = ""
        self.repos: dict[str, dict] = {}  # repo_id -> {"private", "refs", "heads", "commits", "prs"}
        self.collections: dict[str, list[tuple[str, str]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path as sent: "refs%2Fpr%2F1" stays quoted)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._routes = [  # (method, path regex, handler, needs a token)
            ("GET", r"/api/whoami-v2", lambda **_: WHOAMI, True),
            ("POST", r"/api/repos/create", self._create_repo, True),
            ("POST", r"/api/validate-yaml", lambda **_: {"errors": [], "warnings": []}, False),  # README.md
            ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", self._model_info, False),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", self._preupload, True),
            ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", self._commit, True),
            ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", self._create_branch, True),
            ("POST", rf"/api/models/{REPO}/discussions", self._create_pr, True),  # upload_folder(create_pr=True)
            ("GET", rf"/api/models/{REPO}/discussions/(?P<num>\d+)", self._pr_details, False),
            ("POST", r"/api/collections/(?P<slug>[^/]+/[^/]+)/items", self._add_collection_item, True),
            ("GET", r"/api/collections/(?P<slug>[^/]+/[^/]+)", self._get_collection, False),
        ]

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads, self._server.fake = True, self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def files(self, repo_id: str, ref: str = "main") -> dict[str, bytes]:
        """A copy of the files stored at `ref`."""
        return dict(self.repos[repo_id]["refs"][ref])

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict, dict]:
        """(status, json, extra headers) for one request; called by the HTTP handler under a lock."""
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, parts.path))
            try:
                authorization = headers.get("Authorization")
                if authorization is not None and authorization != f"Bearer {self.token}":
                    raise HubError(401, "Invalid credentials in Authorization header")
                for route_method, pattern, func, needs_token in self._routes:
                    match = re.fullmatch(pattern, parts.path)
                    if match and route_method == method:
                        if needs_token and authorization is None:
                            raise HubError(401, "FakeHub: this route needs a token")
                        args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                        return 200, func(body=body, query=query, authed=authorization is not None, **args), {}
                raise HubError(404, f"FakeHub: no route for {method} {parts.path}")
            except HubError as err:
                hdrs = {"X-Error-Message": err.message, **({"X-Error-Code": err.code} if err.code else {})}
                return err.status, {"error": err.message, **err.extra}, hdrs
            except Exception as err:  # noqa: BLE001 - a fake-hub bug fails fast: 501, as 500 is retried (~20 s)
                return 501, {"error": f"FakeHub bug: {err!r}"}, {"X-Error-Message": f"FakeHub bug: {err!r}"}

    def _repo(self, repo_id: str) -> dict:
        if repo_id not in self.repos:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return self.repos[repo_id]

    @staticmethod
    def _ref(info: dict, rev: str) -> dict[str, bytes]:
        """Like the Hub, a branch must exist before anything is uploaded to it (see `create_branch`)."""
        if rev not in info["refs"]:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return info["refs"][rev]

    def _create_repo(self, body: bytes, **_) -> dict:
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:  # the client reads "url" from the 409 body too when exist_ok=True
            raise HubError(409, "You already created this model repo", url=url)
        oid = hashlib.sha1(f"{repo_id}:initial".encode()).hexdigest()
        self.repos[repo_id] = {"private": payload.get("visibility") == "private", "refs": {"main": {}},
                               "heads": {"main": oid}, "commits": [], "prs": {}}
        return {"url": url, "name": repo_id}

    def _model_info(self, repo: str, authed: bool, rev: str = "main", **_) -> dict:
        """Used by create_commit's no-op path: the head `sha` becomes the returned CommitInfo.oid."""
        info = self._repo(repo)
        if info["private"] and not authed:
            raise HubError(404, f"Repository not found: {repo}", "RepoNotFound")
        files = self._ref(info, rev)
        siblings = [{"rfilename": p, "size": len(d), "blobId": git_blob_oid(d)} for p, d in sorted(files.items())]
        return {"id": repo, "sha": info["heads"][rev], "private": info["private"], "siblings": siblings}

    def _preupload(self, repo: str, rev: str, body: bytes, **_) -> dict:
        """Every file is "regular"; `oid` of the stored blob lets the client drop unchanged files."""
        stored = self._ref(self._repo(repo), rev)
        answers = []
        for file in json.loads(body)["files"]:
            answer = {"path": file["path"], "uploadMode": "regular", "shouldIgnore": False}
            if file["path"] in stored:
                answer["oid"] = git_blob_oid(stored[file["path"]])
            answers.append(answer)
        return {"files": answers}

    def _commit(self, repo: str, rev: str, body: bytes, query: dict, **_) -> dict:
        """Apply an NDJSON commit to the existing ref `rev`, or with `?create_pr=1` to a new PR off it."""
        info = self._repo(repo)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        base = self._ref(info, rev)
        pr_num = None
        if query.get("create_pr") == "1":  # create_commit(create_pr=True); upload_folder opens the PR first
            pr_num = self._create_pr(repo, json.dumps({"title": header["summary"]}).encode())["num"]
            rev = f"refs/pr/{pr_num}"
        files, added, deleted = dict(base), [], []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
                deleted.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                deleted += [p for p in files if p.startswith(prefix)]
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            elif key != "header":
                raise HubError(400, f"FakeHub: unsupported commit line {key!r} (no LFS here)")
        oid = hashlib.sha1(f"{repo}:{len(info['commits'])}:{header['summary']}".encode()).hexdigest()
        info["refs"][rev], info["heads"][rev] = files, oid
        commit = {"ref": rev, "message": header["summary"], "files": added, "deleted": deleted, "oid": oid}
        info["commits"].append(commit)
        pr_url = f"{self.url}/{repo}/discussions/{pr_num}" if pr_num else None
        return {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": pr_url}

    def _create_branch(self, repo: str, branch: str, body: bytes, **_) -> dict:
        """`create_branch`: a new ref copied from `startingPoint` (default main); 409 if it exists."""
        info = self._repo(repo)
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        if branch in info["refs"]:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        info["refs"][branch] = dict(self._ref(info, start))
        info["heads"][branch] = info["heads"][start]
        return {}

    def _create_pr(self, repo: str, body: bytes, **_) -> dict:
        """A draft PR: ref `refs/pr/<num>` starting as a copy of main."""
        info = self._repo(repo)
        num = len(info["prs"]) + 1
        info["prs"][num] = json.loads(body)["title"]
        info["refs"][f"refs/pr/{num}"] = dict(info["refs"]["main"])
        info["heads"][f"refs/pr/{num}"] = info["heads"]["main"]
        return {"num": num}

    def _pr_details(self, repo: str, num: str, **_) -> dict:
        """What `get_discussion_details` parses; the client pushes to `refs/pr/<num>` from here on."""
        info = self._repo(repo)
        if int(num) not in info["prs"]:
            raise HubError(404, f"Discussion not found: {num}")
        return {"num": int(num), "title": info["prs"][int(num)], "author": {"name": "tester"}, "createdAt": _now(),
                "status": "draft", "repo": {"name": repo, "type": "model"}, "isPullRequest": True, "events": [],
                "changes": {"base": "refs/heads/main"}, "filesWithConflicts": []}

    def _add_collection_item(self, slug: str, body: bytes, **_) -> dict:
        """Collections spring into existence on first use (creating them is not part of this fake)."""
        item = json.loads(body)["item"]
        items = self.collections.setdefault(slug, [])
        if (item["id"], item["type"]) in items:
            raise HubError(409, "Item already exists in this collection")
        items.append((item["id"], item["type"]))
        return self._get_collection(slug)

    def _get_collection(self, slug: str, **_) -> dict:
        """The fields `huggingface_hub.Collection(**json)` requires."""
        if slug not in self.collections:
            raise HubError(404, f"Collection not found: {slug}")
        items = [{"_id": hashlib.sha1(f"{slug}:{i}".encode()).hexdigest()[:24], "id": item_id, "type": item_type,
                  "position": i} for i, (item_id, item_type) in enumerate(self.collections[slug])]
        return {"slug": slug, "title": slug.split("/")[1], "owner": slug.split("/")[0], "items": items,
                "lastUpdated": _now(), "position": 0, "private": False, "theme": "green", "upvotes": 0}


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP requests into `FakeHub.handle` calls and its answers into JSON responses."""

    def _dispatch(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload, headers = self.server.fake.handle(self.command, self.path, self.headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value.encode("ascii", "backslashreplace").decode())  # headers are latin-1
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, *args) -> None:  # keep test output clean
        pass
