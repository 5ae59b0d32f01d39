"""A loopback Hugging Face Hub for tests: enough of the Hub's HTTP API for huggingface_hub and transformers.

The server keeps every commit of every repository as a full snapshot (path -> bytes), so tests can load an earlier
revision by its commit sha. It binds to 127.0.0.1 on a free port and never reaches the network.

It is standard library (plus PyYAML for card metadata) on purpose: `tests/conftest.py` starts it *before*
huggingface_hub is imported, because huggingface_hub reads `HF_ENDPOINT` once, at import time.

What it speaks (the calls the clients make, read from huggingface_hub 2.4 and transformers 5.23):

- `POST /api/repos/create` (409 when the repo exists), `POST /api/validate-yaml`
- `POST /api/{type}s/{repo}/preupload/{rev}` (every file "regular": content arrives inline, base64, in the commit)
- `POST /api/{type}s/{repo}/commit/{rev}` (NDJSON `header` / `file` / `deletedFile` / `deletedFolder`)
- `POST /api/{type}s/{repo}/branch/{branch}`, `GET /api/{type}s/{repo}/refs`, `GET .../commits/{rev}`
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}` (and `/datasets/{repo}/resolve/...`), `Range` supported
- `GET /api/{type}s/{repo}[/revision/{rev}]`, `GET .../tree/{rev}[/{path}]`, `POST .../paths-info/{rev}`
- `GET /api/whoami-v2`, `GET /api/agent-harnesses`

Anything else is logged loudly, recorded in `HubServer.unknown_requests` and answered 404.

What the clients rely on, found by running them against this server:

- `create_repo(exist_ok=True)` reads `url` from the body of the 409 answer, not only from a 201.
- With `hf_xet` installed, `upload_folder` runs its pipelined uploader: the commit POST is retried with backoff
  (1+2+4+8+8 s) on 429/5xx, so a simulated 500 on "commit" costs ~23 s unless `time.sleep` is patched.
- `from_pretrained` first pins the commit (`GET /api/models/{repo}/revision/main`, or `/api/models/{repo}` through the
  Auto classes), then HEAD/GETs `resolve/{sha}/...`; a second load from the cache makes only the pinning call.
- `AutoTokenizer` lists `tree/main/additional_chat_templates` (404 EntryNotFound is fine) and `tree/main?recursive`.
- On a repo URL, a 401 whose `X-Error-Message` is not "Invalid credentials in Authorization header" reads as
  RepoNotFound (so a bad token gets exactly that message).

Example:
    ```python
    server = HubServer(tokens={"hf_test": "test-user"}).start()
    os.environ["HF_ENDPOINT"] = server.url  # before importing huggingface_hub
    ...
    server.repo("test-user/tiny").commits[0].files  # {"path": b"bytes", ...}
    server.stop()
    ```
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

logger = logging.getLogger("tests.hub_server")

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# The Hub seeds every new repo with this file in an "initial commit".
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob, which the Hub uses as ETag and `oid` of regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Commit:
    """One commit: a full snapshot of the repository."""

    oid: str
    title: str
    message: str
    author: str
    date: str
    parents: list[str]
    files: dict[str, bytes]


@dataclass
class Repo:
    """A repository: its branches (name -> commit oid) and every commit ever made, oldest first."""

    repo_id: str
    repo_type: str
    owner: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)

    def commit(self, oid: str) -> Commit:
        return next(c for c in self.commits if c.oid == oid)

    def resolve(self, revision: str) -> Commit | None:
        """A branch name (`main`, `refs/pr/1`) or a full commit sha -> that commit, else None."""
        revision = unquote(revision)
        if revision in self.branches:
            return self.commit(self.branches[revision])
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in self.branches:
            return self.commit(self.branches[revision[len("refs/heads/") :]])
        if _COMMIT_SHA.match(revision):
            return next((c for c in self.commits if c.oid == revision), None)
        return None

    def head(self, branch: str = DEFAULT_BRANCH) -> Commit:
        return self.commit(self.branches[branch])

    def files_at(self, revision: str = DEFAULT_BRANCH) -> dict[str, bytes]:
        """The snapshot at a branch or commit sha (raises KeyError when unknown)."""
        commit = self.resolve(revision)
        if commit is None:
            raise KeyError(revision)
        return commit.files


class HttpError(Exception):
    """Raised by handlers: becomes an error response with the Hub's `X-Error-Code` / `X-Error-Message` headers."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})
        self.extra = dict(extra or {})  # more keys for the JSON body


class HubServer:
    """An in-memory Hub on 127.0.0.1.

    Args:
        tokens: Valid tokens. A mapping token -> user name, or an iterable of tokens (all for `test-user`).

    Attributes:
        url: `http://127.0.0.1:PORT`, once started.
        repos: `(repo_type, repo_id) -> Repo`.
        requests: Every request seen, as `"METHOD /path"`.
        unknown_requests: Requests no handler knew (answered 404).
        fail: Endpoint name -> HTTP status to answer instead of serving it (`"commit"`, `"preupload"`,
            `"create_repo"`, `"resolve"`, `"whoami"`, ...). See `failing()`.
    """

    host = "127.0.0.1"  # loopback only, never a public interface

    def __init__(self, tokens: Mapping[str, str] | Iterable[str] = ("hf_test_token",)):
        self.tokens: dict[str, str] = (
            dict(tokens) if isinstance(tokens, Mapping) else dict.fromkeys(tokens, "test-user")
        )
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []
        self.unknown_requests: list[str] = []
        self.fail: dict[str, int] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HubServer:
        """Bind a free port and serve in a daemon thread."""
        server = self

        class Handler(_HubHandler):
            hub = server

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """One valid token (the first given)."""
        return next(iter(self.tokens))

    # ------------------------------------------------------------------ test helpers

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """The stored repository (KeyError if it was never created)."""
        return self.repos[(repo_type, repo_id)]

    @contextlib.contextmanager
    def failing(self, endpoint: str, status: int = 500) -> Iterator[None]:
        """Answer `status` for every call to `endpoint` (e.g. `"commit"`) inside the block."""
        self.fail[endpoint] = status
        try:
            yield
        finally:
            self.fail.pop(endpoint, None)

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> Repo:
        """Create a repository with the Hub's initial commit (`.gitattributes`)."""
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                # The Hub's 409 carries the url: `create_repo(exist_ok=True)` reads it.
                prefix = "" if repo_type == "model" else f"/{repo_type}s"
                url = f"{self.url}{prefix}/{repo_id}"
                raise HttpError(409, f"You already created this {repo_type} repo", extra={"url": url})
            repo = Repo(repo_id, repo_type, owner=repo_id.split("/")[0], private=private, created_at=_now())
            self.repos[(repo_type, repo_id)] = repo
            self._add_commit(repo, DEFAULT_BRANCH, {".gitattributes": _GITATTRIBUTES}, "initial commit", "", "")
            return repo

    def _add_commit(self, repo: Repo, branch: str, files: dict[str, bytes], title: str, message: str, author: str):
        parents = [repo.branches[branch]] if branch in repo.branches else []
        seed = json.dumps([repo.repo_id, parents, title, next(self._counter)]).encode()
        digest = hashlib.sha1(seed)
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha(files[path]).encode())
        commit = Commit(digest.hexdigest(), title, message, author, _now(), parents, dict(files))
        repo.commits.append(commit)
        repo.branches[branch] = commit.oid
        return commit


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "TestHub/1.0"

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.route, self.query = parts.path, parse_qs(parts.query)
        self.body = self._read_body()
        self.hub.requests.append(f"{method} {self.path}")
        try:
            self._check_token()
            for pattern, methods, name, handler in _ROUTES:
                match = pattern.match(self.route)
                if match and method in methods:
                    if name in self.hub.fail:
                        status = self.hub.fail[name]
                        raise HttpError(status, f"Simulated failure of the {name} endpoint ({status})")
                    handler(self, method, **match.groupdict())
                    return
            self.hub.unknown_requests.append(f"{method} {self.path}")
            # Loud on purpose: a client calling something new should be noticed, not silently 404'd.
            print(f"TEST HUB: unknown request {method} {self.path} -> 404", file=sys.stderr, flush=True)
            logger.warning("TEST HUB: unknown request %s %s -> 404", method, self.path)
            raise HttpError(404, f"Test Hub does not implement {method} {self.route}")
        except HttpError as e:
            self._send_error(e, method)
        except Exception as e:  # a bug in this server: answer 500 (not a dropped connection) and say so loudly
            traceback.print_exc(file=sys.stderr)
            self._send_error(
                HttpError(500, f"Test Hub crashed on {method} {self.route}: {type(e).__name__}: {e}"), method
            )

    def _send_error(self, error: HttpError, method: str) -> None:
        headers = dict(error.headers)
        if error.code:
            headers["X-Error-Code"] = error.code
        # Header values are latin-1, one line.
        headers["X-Error-Message"] = " ".join(error.message.split()).encode("ascii", "replace").decode()
        body = {"error": error.message, **error.extra}
        self._send_json(body, status=error.status, headers=headers, head=method == "HEAD")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _check_token(self) -> None:
        """A request that bears a token must bear a valid one (like the Hub). Who it is, or None."""
        auth = self.headers.get("Authorization", "")
        self.user: str | None = None
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :].strip()
            if token not in self.hub.tokens:
                raise HttpError(401, _INVALID_CREDENTIALS)
            self.user = self.hub.tokens[token]

    def _require_user(self) -> str:
        if self.user is None:
            raise HttpError(401, "You must be authenticated to do this (Authorization: Bearer <token>)")
        return self.user

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], head: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200, headers: Mapping[str, str] | None = None, head=False) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})}, head=head)

    def _json_body(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as e:
            raise HttpError(400, f"Invalid JSON body: {e}") from e

    def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.user != repo.owner):
            raise HttpError(404, "Repository not found", code="RepoNotFound")
        if write and self._require_user() != repo.owner:
            raise HttpError(403, "You don't have the rights to write to this repo")
        return repo

    def _revision(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HttpError(404, "Invalid rev id: " + unquote(revision), code="RevisionNotFound")
        return commit

    def _base_url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"/{repo.repo_type}s"
        return f"{self.hub.url}{prefix}/{repo.repo_id}"

    # ------------------------------------------------------------------ account

    def whoami(self, method):
        user = self._require_user()
        token_name = "test-token"
        self._send_json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "email": f"{user}@example.invalid",
                "emailVerified": True,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": token_name, "role": "write"}},
            }
        )

    def agent_harnesses(self, method):
        self._send_json({"standardEnvVars": [], "harnesses": {}})

    def validate_yaml(self, method):
        content = self._json_body().get("content", "")
        errors = []
        if content.startswith("---"):
            front = content.split("---", 2)
            try:
                yaml.safe_load(front[1] if len(front) > 2 else "")
            except yaml.YAMLError as e:
                errors.append({"message": f"Invalid YAML in README.md: {e}"})
        self._send_json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    # ------------------------------------------------------------------ repos

    def create_repo(self, method):
        user = self._require_user()
        payload = self._json_body()
        namespace, name = payload.get("organization") or user, payload.get("name", "")
        repo_type = payload.get("type") or "model"
        if not _NAME.match(name) or not _NAME.match(namespace) or repo_type not in REPO_TYPES:
            raise HttpError(400, f"Invalid repo name or type: {namespace}/{name} ({repo_type})")
        if namespace != user:
            raise HttpError(403, f"You don't have the rights to create a repo under {namespace}")
        repo = self.hub.create_repo(f"{namespace}/{name}", repo_type, private=payload.get("visibility") == "private")
        self._send_json({"url": self._base_url(repo), "name": repo.repo_id, "id": repo.repo_id})

    def repo_info(self, method, type, repo, rev=None):
        repo = self._repo(type, repo)
        commit = self._revision(repo, rev or DEFAULT_BRANCH)
        card_data = _card_data(commit.files.get("README.md", b""))
        tags = list(card_data.get("tags") or [])
        for key in ("library_name", "pipeline_tag"):
            if card_data.get(key) and card_data[key] not in tags:
                tags.append(card_data[key])
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.owner,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "cardData": card_data,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            "usedStorage": sum(len(b) for b in commit.files.values()),
        }
        if type == "model":
            info["modelId"] = repo.repo_id
            info["library_name"] = card_data.get("library_name")
            info["pipeline_tag"] = card_data.get("pipeline_tag")
            if "config.json" in commit.files:
                with contextlib.suppress(ValueError):
                    config = json.loads(commit.files["config.json"])
                    info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
        self._send_json(info)

    def tree(self, method, type, repo, rev, path=None):
        repo = self._repo(type, repo)
        commit = self._revision(repo, rev)
        prefix = unquote(path).strip("/") if path else ""
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = _tree_entries(commit.files)
        if prefix and prefix not in entries:
            raise HttpError(404, f"Path {prefix} not found", code="EntryNotFound")
        if prefix and entries[prefix]["type"] == "file":
            raise HttpError(400, f"{prefix} is a file, not a folder")
        listed = []
        for entry_path, entry in sorted(entries.items()):
            if prefix and not entry_path.startswith(prefix + "/"):
                continue
            rest = entry_path[len(prefix) + 1 :] if prefix else entry_path
            if recursive or "/" not in rest:
                listed.append(entry)
        self._send_json(listed)

    def paths_info(self, method, type, repo, rev):
        repo = self._repo(type, repo)
        commit = self._revision(repo, rev)
        content_type = self.headers.get("Content-Type", "")
        form = self._json_body() if "json" in content_type else parse_qs(self.body.decode())
        paths = form.get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        entries = _tree_entries(commit.files)
        self._send_json([entries[p.strip("/")] for p in paths if p.strip("/") in entries])

    def refs(self, method, type, repo):
        repo = self._repo(type, repo)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in repo.branches.items()
            if not name.startswith("refs/pr/")
        ]
        prs = [
            {"name": name, "ref": name, "targetCommit": oid}
            for name, oid in repo.branches.items()
            if name.startswith("refs/pr/")
        ]
        self._send_json({"branches": branches, "tags": [], "converts": [], "pullRequests": prs})

    def list_commits(self, method, type, repo, rev):
        repo = self._repo(type, repo)
        commit, history = self._revision(repo, rev), []
        while commit is not None:
            history.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.message,
                    "authors": [{"user": commit.author}] if commit.author else [],
                    "date": commit.date,
                }
            )
            commit = repo.commit(commit.parents[0]) if commit.parents else None
        self._send_json(history)

    def create_branch(self, method, type, repo, branch):
        repo = self._repo(type, repo, write=True)
        branch = unquote(branch)
        if branch.startswith("refs/"):
            raise HttpError(400, f"Invalid reference for a branch: {branch}")
        with self.hub._lock:
            if branch in repo.branches:
                raise HttpError(409, f"Reference already exists: refs/heads/{branch}")
            starting_point = self._json_body().get("startingPoint") or DEFAULT_BRANCH
            repo.branches[branch] = self._revision(repo, starting_point).oid
        self._send_json({})

    # ------------------------------------------------------------------ uploads

    def preupload(self, method, type, repo, rev):
        repo = self._repo(type, repo, write=True)
        create_pr = self.query.get("create_pr", ["0"])[0] == "1"
        commit = self._revision(repo, DEFAULT_BRANCH if create_pr else rev)
        files = []
        for item in self._json_body().get("files", []):
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",  # content comes inline in the commit: no LFS / Xet transfer
                    "shouldIgnore": False,
                    "oid": git_blob_sha(existing) if existing is not None else None,
                }
            )
        self._send_json({"files": files, "commitOid": commit.oid})

    def commit(self, method, type, repo, rev):
        repo = self._repo(type, repo, write=True)
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HttpError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = self.query.get("create_pr", ["0"])[0] == "1"
        with self.hub._lock:
            branch = unquote(rev)
            base = self._revision(repo, DEFAULT_BRANCH if create_pr else branch)
            if branch not in repo.branches and not create_pr:
                raise HttpError(400, f"Can only commit to a branch, not {branch}")
            if header.get("parentCommit") and header["parentCommit"] != base.oid:
                raise HttpError(412, f"Parent commit {header['parentCommit']} is not the head of {branch}")
            files = dict(base.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "").strip("/")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HttpError(400, f"Unsupported encoding {value.get('encoding')}")
                    files[path] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if path not in files:
                        raise HttpError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    files = {p: b for p, b in files.items() if not p.startswith(path + "/")}
                elif key in ("lfsFile", "deletedEntries"):
                    raise HttpError(400, f"The test Hub answers 'regular' to preupload; got an {key} line")
                else:
                    raise HttpError(400, f"Unknown commit operation {key!r}")
            pr_url = None
            if create_pr:
                number = 1 + sum(name.startswith("refs/pr/") for name in repo.branches)
                branch = f"refs/pr/{number}"
                repo.branches[branch] = base.oid
                pr_url = f"{self._base_url(repo)}/discussions/{number}"
            commit = self.hub._add_commit(
                repo, branch, files, header.get("summary", ""), header.get("description", ""), self.user or ""
            )
        self._send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._base_url(repo)}/commit/{commit.oid}",
                "pullRequestUrl": pr_url,
                "hookOutput": "",
            }
        )

    # ------------------------------------------------------------------ downloads

    def resolve(self, method, prefix, repo, rev, path):
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix or ""]
        repo = self._repo(repo_type, repo)
        commit = self._revision(repo, rev)
        path = unquote(path)
        if path not in commit.files:
            raise HttpError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        content = commit.files[path]
        etag = git_blob_sha(content)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
        }
        status, body = 200, content
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(content) - 1
            if start >= len(content) and len(content) > 0:
                raise HttpError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(content)}"})
            status, body = 206, content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(content)}"
        headers["Content-Length"] = str(len(body))
        self._send(status, body, headers, head=method == "HEAD")


def _card_data(readme: bytes) -> dict:
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    parts = text.split("\n---", 1)
    try:
        data = yaml.safe_load(parts[0][3:]) if len(parts) == 2 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _tree_entries(files: Mapping[str, bytes]) -> dict[str, dict]:
    """Every file and folder of a snapshot, in the Hub's tree format."""
    entries: dict[str, dict] = {}
    for path, content in files.items():
        entries[path] = {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path}
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            oid = hashlib.sha1(f"tree {folder}".encode()).hexdigest()
            entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
    return entries


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_TYPE = r"(?P<type>model|dataset|space)s"
_ROUTES = [
    (re.compile(p), methods, name, handler)
    for p, methods, name, handler in [
        (r"^/api/whoami-v2$", ("GET",), "whoami", _HubHandler.whoami),
        (r"^/api/agent-harnesses$", ("GET",), "agent_harnesses", _HubHandler.agent_harnesses),
        (r"^/api/validate-yaml$", ("POST",), "validate_yaml", _HubHandler.validate_yaml),
        (r"^/api/repos/create$", ("POST",), "create_repo", _HubHandler.create_repo),
        (rf"^/api/{_TYPE}/{_REPO}/preupload/(?P<rev>.+)$", ("POST",), "preupload", _HubHandler.preupload),
        (rf"^/api/{_TYPE}/{_REPO}/commit/(?P<rev>.+)$", ("POST",), "commit", _HubHandler.commit),
        (rf"^/api/{_TYPE}/{_REPO}/branch/(?P<branch>.+)$", ("POST",), "create_branch", _HubHandler.create_branch),
        (rf"^/api/{_TYPE}/{_REPO}/refs$", ("GET",), "refs", _HubHandler.refs),
        (rf"^/api/{_TYPE}/{_REPO}/commits/(?P<rev>[^/]+)$", ("GET",), "commits", _HubHandler.list_commits),
        (rf"^/api/{_TYPE}/{_REPO}/paths-info/(?P<rev>[^/]+)$", ("POST",), "paths_info", _HubHandler.paths_info),
        (rf"^/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", ("GET",), "tree", _HubHandler.tree),
        (rf"^/api/{_TYPE}/{_REPO}(?:/revision/(?P<rev>[^/]+))?$", ("GET",), "repo_info", _HubHandler.repo_info),
        (
            rf"^/(?P<prefix>datasets/|spaces/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
            ("GET", "HEAD"),
            "resolve",
            _HubHandler.resolve,
        ),
    ]
]
