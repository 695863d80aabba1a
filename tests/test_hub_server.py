"""The fake Hub drives the real `huggingface_hub.HfApi` client: uploads, no-op commits, PRs, auth, collections."""

import socket
from pathlib import Path

import pytest
from hub_server import FakeHub, git_blob_oid, hub_env
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

REPO_ID = "tester/tiny-model"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A running fake hub; the client may reach it and nothing else (any other host lookup fails the test)."""
    real_getaddrinfo, blocked = socket.getaddrinfo, []

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            blocked.append(host)  # recorded too: the client swallows some errors (best-effort fetches)
            raise socket.gaierror(f"test tried to reach the network: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    with FakeHub() as server:
        hub_env(monkeypatch, tmp_path / "hf-home", url=server.url)
        yield server
    assert blocked == []


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=hub.token)


@pytest.fixture(params=["pipeline", "create_commit"])
def uploader(request, api, monkeypatch):
    """The real client on both upload_folder paths: hf_xet's streamed pipeline, and plain create_commit."""
    if request.param == "create_commit":
        monkeypatch.setattr("huggingface_hub.hf_api.is_xet_available", lambda: False)
    else:
        pytest.importorskip("hf_xet")
    return api


@pytest.fixture
def folder(tmp_path) -> Path:
    """A few text files (a model card among them) and one small binary file (every byte value) in a subfolder."""
    root = tmp_path / "model"
    (root / "weights").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}\n')
    (root / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\nworld\n")
    (root / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# tiny model\n")
    (root / "weights" / "blob.bin").write_bytes(bytes(range(256)) + b"\x00\xff" * 10)
    return root


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def upload(api, folder, **kwargs):
    return api.upload_folder(repo_id=REPO_ID, folder_path=folder, commit_message="upload", **kwargs)


def test_whoami_and_create_repo(api, hub):
    assert api.whoami()["name"] == "tester"
    url = api.create_repo(REPO_ID, exist_ok=True, private=True)
    assert url.repo_id == REPO_ID and url.startswith(hub.url)
    assert hub.repos[REPO_ID]["private"] is True and hub.files(REPO_ID) == {}
    assert api.create_repo(REPO_ID, exist_ok=True).repo_id == REPO_ID  # 409 handled by the client
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO_ID)
    assert err.value.response.status_code == 409


def test_upload_folder_stores_every_byte(uploader, hub, folder):
    uploader.create_repo(REPO_ID, exist_ok=True, private=False)
    info = upload(uploader, folder)
    assert hub.files(REPO_ID) == local_files(folder)
    assert "weights/blob.bin" in hub.files(REPO_ID)
    assert len(hub.repos[REPO_ID]["commits"]) == 1
    assert info.oid == hub.repos[REPO_ID]["commits"][-1]["oid"] and len(info.oid) == 40
    assert info.pr_url is None
    assert ("POST", f"/api/models/{REPO_ID}/preupload/main") in hub.requests
    assert ("POST", f"/api/models/{REPO_ID}/commit/main") in hub.requests


def test_same_folder_twice_makes_no_commit(uploader, hub, folder):
    uploader.create_repo(REPO_ID, exist_ok=True)
    first = upload(uploader, folder)
    second = upload(uploader, folder)
    assert len(hub.repos[REPO_ID]["commits"]) == 1
    assert second.oid == first.oid  # the client returns the head commit, read via model_info
    assert hub.requests.count(("POST", f"/api/models/{REPO_ID}/commit/main")) == 1
    assert ("GET", f"/api/models/{REPO_ID}/revision/main") in hub.requests


def test_one_changed_file_makes_one_commit_with_only_it(uploader, hub, folder):
    uploader.create_repo(REPO_ID, exist_ok=True)
    upload(uploader, folder)
    (folder / "weights" / "blob.bin").write_bytes(b"\x01\x02\x03")
    info = upload(uploader, folder)
    commits = hub.repos[REPO_ID]["commits"]
    assert len(commits) == 2
    assert commits[-1]["files"] == ["weights/blob.bin"] and info.oid == commits[-1]["oid"]
    assert hub.files(REPO_ID) == local_files(folder)


def test_create_pr_leaves_main_alone(uploader, hub, folder):
    uploader.create_repo(REPO_ID, exist_ok=True)
    upload(uploader, folder)
    main_before = hub.files(REPO_ID)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# proposed\n")
    info = upload(uploader, folder, create_pr=True)
    assert hub.files(REPO_ID) == main_before
    assert info.pr_revision == "refs/pr/1" and info.pr_num == 1
    assert hub.files(REPO_ID, "refs/pr/1") == local_files(folder)
    assert hub.repos[REPO_ID]["commits"][-1]["files"] == ["README.md"]
    assert hub.repos[REPO_ID]["commits"][-1]["ref"] == "refs/pr/1"


def test_create_pr_with_nothing_changed_opens_no_pr(uploader, hub, folder):
    uploader.create_repo(REPO_ID, exist_ok=True)
    first = upload(uploader, folder)
    info = upload(uploader, folder, create_pr=True)
    assert info.pr_url is None and info.oid == first.oid
    assert hub.repos[REPO_ID]["prs"] == {} and len(hub.repos[REPO_ID]["commits"]) == 1


def test_upload_to_branch(uploader, hub, folder):
    uploader.create_repo(REPO_ID, exist_ok=True)
    uploader.upload_file(path_or_fileobj=b"on main\n", path_in_repo="main.txt", repo_id=REPO_ID)
    with pytest.raises(RevisionNotFoundError):  # like the Hub: the branch must be created first
        upload(uploader, folder, revision="dev")
    uploader.create_branch(REPO_ID, branch="dev", exist_ok=True)
    uploader.create_branch(REPO_ID, branch="dev", exist_ok=True)  # 409 handled by the client
    upload(uploader, folder, revision="dev")
    assert hub.files(REPO_ID, "dev") == {"main.txt": b"on main\n", **local_files(folder)}
    assert hub.files(REPO_ID) == {"main.txt": b"on main\n"}
    assert ("POST", f"/api/models/{REPO_ID}/commit/dev") in hub.requests


def test_blob_oid_is_git_hash_object():
    assert git_blob_oid(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_wrong_token_is_rejected(hub):
    bad = HfApi(endpoint=hub.url, token="hf_wrong")
    with pytest.raises(HfHubHTTPError) as err:
        bad.whoami()
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:
        bad.create_repo(REPO_ID, exist_ok=True)
    assert err.value.response.status_code == 401
    assert hub.repos == {}


def test_unknown_route_is_a_clear_404(api, hub):
    with pytest.raises(HfHubHTTPError, match="FakeHub: no route for GET /api/datasets/x/y"):
        api.dataset_info("x/y")


def test_add_collection_item(api, hub):
    slug = "tester/bort-zoo-0123456789abcdef01234567"
    collection = api.add_collection_item(slug, REPO_ID, item_type="model", exists_ok=True)
    assert hub.collections[slug] == [(REPO_ID, "model")]
    assert [(i.item_id, i.item_type) for i in collection.items] == [(REPO_ID, "model")]
    again = api.add_collection_item(slug, REPO_ID, item_type="model", exists_ok=True)
    assert hub.collections[slug] == [(REPO_ID, "model")] and len(again.items) == 1
    with pytest.raises(HfHubHTTPError) as err:
        api.add_collection_item(slug, REPO_ID, item_type="model")
    assert err.value.response.status_code == 409
