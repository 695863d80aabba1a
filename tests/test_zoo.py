"""The zoo: registry facts, the generated table of docs/zoo.md, `bortzoo zoo list`, and `load()` for folders, for
`amazon/bort` from a Hugging Face cache laid out like the real one (offline), and for zoo entries."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_ARCH, make_bort_layout

import bortzoo
from bortzoo import zoo
from bortzoo.cli import main as cli_main
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task
from bortzoo.zoo import KINDS, REGISTRY, ZooEntry, load, markdown_table, register

BORT_COMMIT = hashlib.sha1(b"bortzoo stand-in of amazon/bort").hexdigest()  # 40 hex, as bortzoo.full_shape.commit_of


# -- fixtures ----------------------------------------------------------------------------------------
def _save_with_tokenizer(model, folder: Path, tokenizer_dir: str) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A sequence-classification folder (2 labels) with the tiny tokenizer, as transformers saves it."""
    from transformers import BertForSequenceClassification

    with torch.random.fork_rng(devices=[]):  # reproducible weights, other tests' RNG untouched
        torch.manual_seed(0)
        model = BertForSequenceClassification(TINY_ARCH.to_bert_config(num_labels=2))
    return _save_with_tokenizer(model, tmp_path_factory.mktemp("task"), tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def multiple_choice_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from transformers import BertForMultipleChoice

    with torch.random.fork_rng(devices=[]):  # reproducible weights, other tests' RNG untouched
        torch.manual_seed(0)
        model = BertForMultipleChoice(TINY_ARCH.to_bert_config())
    return _save_with_tokenizer(model, tmp_path_factory.mktemp("multiple-choice"), tiny_tokenizer_dir)


@pytest.fixture
def bort_hub_cache(tmp_path, monkeypatch) -> Path:
    """A Hugging Face hub cache holding `amazon/bort` exactly as a download leaves it: `refs/main` names
    the commit, `snapshots/<commit>/` holds relative symlinks into `blobs/`. huggingface_hub is pointed at
    it (`snapshot_download` reads `constants.HF_HUB_CACHE` when called) and kept offline."""
    from huggingface_hub import constants

    from bortzoo.full_shape import add_to_hub_cache, commit_of

    cache = tmp_path / "hub"
    snapshot = add_to_hub_cache(cache, "amazon/bort", make_bort_layout(tmp_path / "source", trained_head=False))
    assert snapshot.name == commit_of("amazon/bort") == BORT_COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "merges.txt", "model.safetensors",
                                                          "vocab.json"]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return snapshot


def _assert_eval_mode(model) -> None:
    assert not model.training
    assert not any(module.training for module in model.modules())


def _encode(tokenizer, text: str = "the cat sat on the mat") -> dict:
    return dict(tokenizer(text, return_tensors="pt"))


# -- 1. registry facts -------------------------------------------------------------------------------
def test_every_entry_has_a_valid_kind_and_its_key_is_its_name():
    assert REGISTRY
    for name, entry in REGISTRY.items():
        assert entry.kind in KINDS, name
        assert name == entry.name
        entry.shape  # the arch resolves (preset, "D,A,H,I" or dict)


def test_zoo_names_are_unique():
    names = [row["name"] for row in zoo.rows()]
    assert len(names) == len(set(names)) == len(REGISTRY)


def test_task_entries_carry_their_tasks_label_names():
    tasks = [entry for entry in REGISTRY.values() if entry.kind == "task"]
    assert tasks
    for entry in tasks:
        assert entry.task is not None
        assert entry.label_names == get_task(entry.task).label_names, entry.name
    for entry in REGISTRY.values():
        if entry.kind != "task":
            assert entry.task is None and entry.label_names == (), entry.name


def test_amazon_bort_is_an_encoder_whose_notes_say_the_mlm_head_is_broken():
    (entry,) = [e for e in REGISTRY.values() if e.hub_id == "amazon/bort"]
    assert entry.name == "bort"
    assert entry.kind == "encoder"
    assert entry.by == "Bort's authors"
    notes = entry.notes.lower()
    assert "masked-lm head" in notes
    assert "never converted" in notes or "broken" in notes or "junk" in notes


def test_invalid_entries_are_refused():
    with pytest.raises(BortzooError, match="kind must be one of"):
        ZooEntry("x", "org/x", "tokenizer", "bort")
    with pytest.raises(BortzooError, match="needs a task"):
        ZooEntry("x", "org/x", "task", "bort")
    with pytest.raises(BortzooError, match="needs a task"):
        ZooEntry("x", "org/x", "encoder", "bort", task="rte")


def test_register_refuses_a_duplicate_name(monkeypatch):
    monkeypatch.setattr(zoo, "REGISTRY", dict(REGISTRY))
    before = dict(zoo.REGISTRY)
    with pytest.raises(BortzooError, match="'bort' is already registered"):
        register(ZooEntry("bort", "someone/else", "masked-lm", "bort"))
    assert zoo.REGISTRY == before
    new = register(ZooEntry("bort-2", "someone/else", "masked-lm", "bort"))
    assert zoo.REGISTRY["bort-2"] is new



# -- 2. the zoo page's table is generated --------------------------------------------------------------
def test_readme_zoo_block_equals_markdown_table():
    lines = (REPO / "docs" / "zoo.md").read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("<!-- zoo:start")]
    ends = [i for i, line in enumerate(lines) if line.strip() == "<!-- zoo:end -->"]
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0], "docs/zoo.md needs one zoo:start/zoo:end pair"
    block = "\n".join(lines[starts[0] + 1:ends[0]])
    assert block == markdown_table(), "docs/zoo.md's zoo table is stale: regenerate it with `python -m bortzoo.zoo`"


def test_markdown_table_has_one_row_per_entry():
    table = markdown_table().splitlines()
    assert len(table) == 2 + len(REGISTRY)
    for line, entry in zip(table[2:], REGISTRY.values()):
        assert line.startswith(f"| {entry.name} | `{entry.hub_id}` | {entry.kind} |")


# -- 3. `bortzoo zoo list` ---------------------------------------------------------------------------
def test_cli_zoo_list_prints_every_entry(capsys):
    cli_main(["zoo", "list"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    for entry in REGISTRY.values():
        assert any(line.split()[:3] == [entry.name, entry.hub_id, entry.kind] for line in lines if line.strip()), \
            entry.name
    assert f"{len(REGISTRY)} checkpoints" in out


def test_cli_zoo_list_markdown_prints_the_table(capsys):
    cli_main(["zoo", "list", "--markdown"])
    assert capsys.readouterr().out == markdown_table() + "\n"


# -- 4. load() on local folders ----------------------------------------------------------------------
def test_a_local_copy_of_amazon_bort_warns_and_loads_the_encoder(tmp_path):
    """The junk masked-LM head is recognised from the weights (still at its initial values), not from the name."""
    from transformers import BertModel

    folder = make_bort_layout(tmp_path / "my-copy-of-bort", trained_head=False)
    with pytest.warns(UserWarning, match="masked-LM head is broken"):
        model, _ = load(str(folder))
    assert type(model) is BertModel


def test_load_masked_lm_folder(tmp_path, recwarn):
    from transformers import BertForMaskedLM

    folder = make_bort_layout(tmp_path / "not-amazon-bort")  # amazon/bort's layout, another name, a trained head
    model, tokenizer = load(str(folder))
    assert not [w for w in recwarn if "masked-LM head" in str(w.message)]
    assert type(model) is BertForMaskedLM
    _assert_eval_mode(model)
    batch = _encode(tokenizer)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], TINY_ARCH.vocab_size)
    assert torch.isfinite(logits).all()


def test_load_sequence_classification_folder(task_dir):
    from transformers import BertForSequenceClassification

    model, tokenizer = load(str(task_dir))
    assert type(model) is BertForSequenceClassification
    _assert_eval_mode(model)
    batch = _encode(tokenizer)
    with torch.no_grad():
        first, second = model(**batch).logits, model(**batch).logits
    assert first.shape == (1, 2)
    assert torch.equal(first, second)  # eval mode: no dropout


def test_load_multiple_choice_folder(multiple_choice_dir):
    from transformers import BertForMultipleChoice

    model, tokenizer = load(str(multiple_choice_dir))
    assert type(model) is BertForMultipleChoice
    _assert_eval_mode(model)
    encoded = tokenizer(["a cat", "a dog", "a bird"], ["sat", "sat", "sat"], padding=True, return_tensors="pt")
    batch = {k: v.unsqueeze(0) for k, v in encoded.items()}  # (batch=1, choices=3, length)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, 3)


def test_bortzoo_load_is_zoo_load(task_dir):
    from transformers import BertForSequenceClassification

    assert bortzoo.load is load
    model, tokenizer = bortzoo.load(str(task_dir))
    reference, _ = load(str(task_dir))
    assert type(model) is BertForSequenceClassification
    _assert_eval_mode(model)
    batch = _encode(tokenizer)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reference(**batch).logits)


def test_load_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(BortzooError, match="does not exist"):
        load(str(tmp_path / "no" / "such" / "folder"))


# -- 5. amazon/bort from the Hugging Face cache, offline ------------------------------------------------
@pytest.mark.parametrize("ref", ["amazon/bort", "bort"])
def test_amazon_bort_loads_as_the_bare_encoder_from_the_cache(bort_hub_cache, tiny_tokenizer_dir, ref):
    from safetensors.torch import load_file
    from transformers import BertModel

    with pytest.warns(UserWarning, match="masked-LM head is broken"):
        model, tokenizer = load(ref)
    assert type(model) is BertModel
    _assert_eval_mode(model)
    # the encoder weights are the snapshot's, not a fresh initialisation
    saved = load_file(str(bort_hub_cache / "model.safetensors"))
    assert torch.equal(model.embeddings.word_embeddings.weight, saved["bert.embeddings.word_embeddings.weight"])
    # the tokenizer is the snapshot's: the tiny RoBERTa BPE vocabulary
    vocab = json.loads((Path(tiny_tokenizer_dir) / "vocab.json").read_text(encoding="utf-8"))
    assert len(tokenizer) == len(vocab) == TINY_ARCH.vocab_size
    assert {k: v for k, v in tokenizer.get_vocab().items() if k in vocab} == vocab
    batch = _encode(tokenizer)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (1, batch["input_ids"].shape[1], TINY_ARCH.hidden)


def test_amazon_bort_not_in_the_cache_offline_is_one_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BortzooError, match="not in the local Hugging Face cache"):
        load("amazon/bort")


# -- 6. a zoo entry pointing at a local folder --------------------------------------------------------
def test_zoo_entry_for_a_local_folder(task_dir, monkeypatch):
    from transformers import BertForSequenceClassification

    entry = ZooEntry("tiny-task", str(task_dir), "task", TINY_ARCH.as_dict(), task="rte")
    monkeypatch.setattr(zoo, "REGISTRY", {**REGISTRY, entry.name: entry})
    assert entry.label_names == ("entailment", "not_entailment")
    assert any(row["name"] == "tiny-task" for row in zoo.rows())
    model, tokenizer = load("tiny-task")
    assert type(model) is BertForSequenceClassification
    _assert_eval_mode(model)
    assert model.config.num_labels == len(entry.label_names)
    with torch.no_grad():
        assert model(**_encode(tokenizer)).logits.shape == (1, len(entry.label_names))


def test_a_task_entry_names_generic_labels_and_refuses_a_wrong_label_count(task_dir, monkeypatch):
    """Hub fine-tunes often say LABEL_0/LABEL_1: the task spec's names replace them; a count mismatch is an error."""
    from bortzoo import zoo

    monkeypatch.setitem(zoo.REGISTRY, "tiny-rte", ZooEntry("tiny-rte", str(task_dir), "task", TINY_ARCH.as_dict(),
                                                              task="rte"))
    monkeypatch.setitem(zoo.REGISTRY, "tiny-mnli", ZooEntry("tiny-mnli", str(task_dir), "task", TINY_ARCH.as_dict(),
                                                               task="mnli"))
    model, _ = load("tiny-rte")
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    with pytest.raises(BortzooError, match="2 outputs but task mnli has 3 labels"):
        load("tiny-mnli")



def test_load_runs_in_the_dtype_asked_for_and_logs_what_is_stored(tmp_path, caplog):
    import logging

    from bortzoo.export import write_random_masked_lm

    folder = write_random_masked_lm(tmp_path / "half", TINY_ARCH, seed=1, dtype=torch.float16)
    with caplog.at_level(logging.INFO, logger="bortzoo"):
        model, _ = load(str(folder))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert "weights stored as float16, running in float32" in caplog.text
    kept, _ = load(str(folder), dtype="auto")
    assert {p.dtype for p in kept.parameters()} == {torch.float16}
    with pytest.raises(BortzooError, match="dtype must be one of"):
        load(str(folder), dtype="fp8")


def test_one_resolver_reads_every_kind_of_model_reference(tmp_path, bort_layout_dir):
    from bortzoo.arch import get_arch
    from bortzoo.zoo import model_ref

    random = model_ref(None, arch="bort")
    assert random.kind == "arch" and random.arch() == get_arch("bort")
    named = model_ref("bert-large-rte")  # a zoo name: its Hub id and pinned revision
    assert named.kind == "pretrained" and named.source == REGISTRY["bert-large-rte"].hub_id
    assert named.entry is REGISTRY["bert-large-rte"] and named.revision == REGISTRY["bert-large-rte"].revision
    assert model_ref("org/some-model", "v1") == model_ref("org/some-model", "v1")
    assert model_ref("org/some-model", "v1").source == "org/some-model"
    folder = model_ref(str(bort_layout_dir))
    assert folder.kind == "pretrained" and folder.folder() == bort_layout_dir
    config = json.loads((bort_layout_dir / "config.json").read_text())
    assert (folder.arch().depth, folder.arch().hidden) == (config["num_hidden_layers"], config["hidden_size"])
    assert model_ref(str(bort_layout_dir), arch="bert-large").kind == "pretrained"  # the weights win over a shape
    with pytest.raises(BortzooError, match="does not exist"):
        model_ref(str(tmp_path / "missing.ckpt"))
    with pytest.raises(BortzooError, match="no model"):
        model_ref(None)
    (tmp_path / "student.ckpt").write_bytes(b"")
    checkpoint = model_ref(str(tmp_path / "student.ckpt"))
    assert checkpoint.kind == "checkpoint"
    with pytest.raises(BortzooError, match="has no model folder"):
        checkpoint.folder()
    with pytest.raises(BortzooError, match="export a pretraining checkpoint first"):
        load(str(tmp_path / "student.ckpt"))
