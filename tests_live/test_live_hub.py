"""Opt-in: publish a tiny run to the real Hugging Face Hub and read it back. Never part of `./run test`.

    HF_TOKEN=hf_... BORTZOO_LIVE_REPO=you/bortzoo-live-check .venv/bin/python -m pytest tests_live -p no:cacheprovider

It fine-tunes the tiny RTE recipe, publishes it to a private repo (created if needed), checks that what the
Hub holds equals the folder and that publishing again adds no commit, then loads it back with
`bortzoo.load` and `AutoModelForSequenceClassification`. The repo is deleted at the end unless
BORTZOO_LIVE_KEEP=1.
"""

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def test_publish_to_the_real_hub_and_load_back(tmp_path, monkeypatch):
    repo_id, token = os.environ.get("BORTZOO_LIVE_REPO"), os.environ.get("HF_TOKEN")
    if not repo_id or not token:
        pytest.fail("this opt-in check needs HF_TOKEN and BORTZOO_LIVE_REPO=ORG/NAME (a repo it may create and "
                    "delete)")
    from huggingface_hub import HfApi, snapshot_download
    from transformers import AutoModelForSequenceClassification

    import bortzoo
    from bortzoo.cli import main
    from bortzoo.publish.upload import publish
    from bortzoo.seed_sweep import move_paths

    monkeypatch.chdir(REPO)
    config = move_paths(yaml.safe_load((REPO / "recipes/finetune/glue/rte-bort-tiny.yaml").read_text()), "runs",
                        str(tmp_path / "runs"))
    config["trainer"]["max_epochs"] = 2
    recipe = tmp_path / "rte.yaml"
    recipe.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(recipe)])
    run = Path(config["trainer"]["default_root_dir"])
    api = HfApi(token=token)
    try:
        publish(str(run), repo_id=repo_id, private=True, latency="none", out=str(tmp_path / "hub"))
        commits = len(api.list_repo_commits(repo_id))
        publish(str(run), repo_id=repo_id, private=True, latency="none", out=str(tmp_path / "hub"))
        assert len(api.list_repo_commits(repo_id)) == commits
        snapshot = Path(snapshot_download(repo_id, token=token, cache_dir=str(tmp_path / "cache")))
        for path in (tmp_path / "hub").iterdir():
            assert (snapshot / path.name).read_bytes() == path.read_bytes(), path.name
        model, tokenizer = bortzoo.load(str(snapshot))
        assert type(model) is type(AutoModelForSequenceClassification.from_pretrained(snapshot))
    finally:
        if os.environ.get("BORTZOO_LIVE_KEEP") != "1":
            api.delete_repo(repo_id, missing_ok=True)
