"""Full-shape smoke runs (bortzoo.full_shape): the stand-in checkpoints' layouts, the override of every kind, and
a selection of the runs themselves (bench/full_shape.py runs them all)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch
import yaml

from bortzoo import full_shape
from bortzoo.arch import get_arch
from bortzoo.hub import load_masked_lm, load_tokenizer, stored_dtype, weight_names
from bortzoo.recipe import lightning_cli

TINY = {"depth": 1, "heads": 2, "hidden": 64, "intermediate": 128}


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """Every stand-in's layout at a tiny depth and width (real vocabularies), in a Hugging Face cache."""
    cache = tmp_path_factory.mktemp("hub")
    for stand_in in full_shape.STAND_INS.values():
        arch = {**get_arch(stand_in.arch).as_dict(), **TINY}
        folder = full_shape.write_stand_in(tmp_path_factory.mktemp("staging"), dataclasses.replace(stand_in, arch=arch))
        full_shape.add_to_hub_cache(cache, stand_in.hub_id, folder)
    return cache


@pytest.mark.parametrize("hub_id, files, dtype", [
    ("FacebookAI/roberta-large", {"config.json", "merges.txt", "vocab.json", "model.safetensors"}, "float32"),
    ("google-bert/bert-large-uncased", {"config.json", "tokenizer_config.json", "vocab.txt", "model.safetensors"},
     "float32"),
    ("amazon/bort", {"config.json", "merges.txt", "vocab.json", "model.safetensors"}, "float16"),
])
def test_stand_ins_load_from_the_hub_cache_like_the_real_checkpoints(tiny_cache, hub_id, files, dtype, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tiny_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snapshot = tiny_cache / f"models--{hub_id.replace('/', '--')}" / "snapshots" / full_shape.commit_of(hub_id)
    assert {p.name for p in snapshot.iterdir()} == files
    assert all(p.is_symlink() for p in snapshot.iterdir())
    assert stored_dtype(snapshot) == dtype
    stand_in = full_shape.STAND_INS[hub_id]
    vocab = get_arch(stand_in.arch).vocab_size
    model = load_masked_lm(hub_id, dtype=torch.float32)
    tokenizer = load_tokenizer(hub_id)
    assert type(model).__name__ == ("RobertaForMaskedLM" if stand_in.family == "roberta" else "BertForMaskedLM")
    assert model.config.vocab_size == vocab == len(tokenizer)  # bortzoo.recipe.check_vocab needs them equal
    if stand_in.family == "bert":  # Google's pretraining checkpoint: pooler and NSP head, uncased WordPiece ids
        assert {"bert.pooler.dense.weight", "cls.seq_relationship.weight"} <= weight_names(snapshot)
        assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
                tokenizer.mask_token_id) == (0, 100, 101, 102, 103)
        assert tokenizer.tokenize("The CAT sees") == ["the", "cat", "sees"]
    else:  # RoBERTa's: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last
        assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id,
                tokenizer.mask_token_id) == (0, 1, 2, 3, vocab - 1)
    ids = tokenizer("the cat sees the dog near the river")["input_ids"]
    assert max(ids) < vocab and tokenizer.unk_token_id not in ids


def test_long_task_copies_reach_every_max_length_and_keep_record_offsets(tmp_path):
    import pyarrow.parquet as pq

    root = full_shape.long_task_copies(tmp_path / "long", words=700)
    for path, column in (("glue/rte/validation-00000-of-00001.parquet", "sentence1"),
                         ("race/all/train-00000-of-00001.parquet", "article"),
                         ("super_glue/record/train-00000-of-00001.parquet", "passage")):
        texts = pq.read_table(root / path).column(column).to_pylist()
        assert min(len(t.split()) for t in texts) > 700, path
    record = pq.read_table(root / "super_glue/record/train-00000-of-00001.parquet").to_pylist()
    original = pq.read_table(full_shape.ASSETS / "tiny-tasks/super_glue/record/train-00000-of-00001.parquet").to_pylist()
    assert [r["entities"] for r in record] == [r["entities"] for r in original]
    for row in record[:20]:
        for start, end, text in zip(row["entity_spans"]["start"], row["entity_spans"]["end"],
                                    row["entity_spans"]["text"]):
            assert row["passage"][start:end] == text


def test_every_kind_is_its_recipe_with_only_the_documented_override(tmp_path, monkeypatch):
    """The smoke recipes parse against the code (an unknown key fails), run on one CPU in fp32, and keep every
    model and shape setting of the GPU recipe: model, teacher, arch, max_length, seq_len, optimiser."""
    from bortzoo.agora.loop import agora
    from bortzoo.extract.search import extract

    kinds = set(full_shape.KINDS)
    assert {"pretrain", "extract", "bort-rte", "bert-large-rte", "bort-race", "bort-record", "agora"} <= kinds
    monkeypatch.chdir(tmp_path)
    for kind in full_shape.KINDS.values():
        original = yaml.safe_load(Path(full_shape.resolve_recipe(kind.recipe)).read_text())
        config = full_shape.smoke_recipe(kind, tmp_path / "tasks")
        path = tmp_path / f"{kind.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        if kind.verb == "fit":
            parsed = lightning_cli(["--config", str(path)], run=False, parse_only=True).config
            assert (parsed["trainer"]["accelerator"], parsed["trainer"]["devices"], parsed["trainer"]["precision"],
                    parsed["trainer"]["max_steps"]) == ("cpu", 1, "32-true", 2), kind.name
            assert config["model"] == original["model"], kind.name  # model, teacher, arch, lr, ... untouched
            for key in ("max_length", "seq_len", "pair_encoding", "mlm_probability", "max_predictions", "task"):
                assert config["data"]["init_args"].get(key) == original["data"]["init_args"].get(key), (kind, key)
        else:
            function = {"extract": extract, "agora": agora}[kind.verb]
            assert set(config) <= set(inspect.signature(function).parameters), kind.name
            if kind.verb == "extract":
                assert config["teacher"] == original["teacher"]
                assert config["data"]["seq_len"] == original["data"]["seq_len"]
                assert {config["accelerator"], config["precision"]} == {"cpu", "32-true"}
            else:
                assert (config["finetune"], config["weak_model"], config["transform"]) == (
                    original["finetune"], original["weak_model"], original["transform"])


def test_the_peak_memory_is_the_run_s_own_not_its_parent_s():
    """rusage's ru_maxrss of a child counts the parent's memory it was spawned from; VmHWM after exec does not."""
    import subprocess
    import sys

    ballast = bytearray(600 * 2**20)  # this process grows by 600 MiB, touched
    ballast[::4096] = b"x" * len(ballast[::4096])
    touch = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"  # every page resident, whatever the allocator
    child = subprocess.Popen([sys.executable, "-c", f"import time; {touch}; time.sleep(0.5)"])
    status, peak = full_shape.wait_with_peak(child, 60)
    assert status == 0 and 200 * 2**20 < peak < 500 * 2**20, peak / 2**20
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    assert full_shape.wait_with_peak(slow, 0.5)[0] is None and slow.returncode is not None  # killed at the timeout
    del ballast


def test_an_unknown_kind_is_named():
    with pytest.raises(Exception, match="unknown full-shape kind 'bort-sst'.*pretrain"):
        full_shape.run("bort-sst", "unused", "unused")


@pytest.fixture(scope="module")
def bort_cache(tmp_path_factory):
    """amazon/bort's stand-in at the true shape (fp16 PyTorch pickle, 50,265 tokens) in a Hugging Face cache."""
    return full_shape.stand_in_hub_cache(tmp_path_factory.mktemp("full-shape") / "hub", ["amazon/bort"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bort-race"])  # the suite's budget holds one (about a minute); the bench runs all
def test_full_shape_smoke_run(kind, bort_cache, tmp_path):
    """2 training steps and a validation batch at the recipe's real shapes through the CLI (RACE: 4 options × 512
    tokens, Bort's every position); the outputs a GPU run leaves (results.json with the validation score, last.ckpt
    loadable with weights_only)."""
    result = full_shape.run(kind, tmp_path / kind, bort_cache, timeout=600, plan=False)
    log = (tmp_path / kind / "log.txt").read_text()
    assert result.ok, log[-3000:]
    assert "max_steps=2` reached" in log
    assert "were truncated" in log  # the rows reached max_length: the real shape, not the fixtures' short one
    run_dir = next((tmp_path / kind / "runs").rglob("results.json")).parent
    results = json.loads((run_dir / "results.json").read_text())
    assert results["arch"]["hidden"] == 1024 and results["arch"]["depth"] == 4
    checkpoint = torch.load(next(run_dir.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert result.peak_rss > 0 and result.seconds > 0
