"""bortzoo.convert: a TaskModel as BertForSequenceClassification / BertForMultipleChoice, and back.

Tiny random <2,2,32,64> encoders with their head weights perturbed far from their init (so a wrong or
missing mapping changes the outputs), the project's tiny RoBERTa-style tokenizer, and folders in tmp_path.
"""

import json

import pytest
import torch
from conftest import TINY_ARCH
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMultipleChoice,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from bortzoo.convert import hf_task_config, save_tokenizer, to_hf
from bortzoo.data.encoding import Template
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR
from bortzoo.errors import BortzooError
from bortzoo.hub import load_tokenizer
from bortzoo.modules import TaskModel
from bortzoo.tasks import get_task

KINDS = [("rte", 2), ("mnli", 3), ("stsb", 1), ("race-all", 1)]
HEADS = ["bort", "pooler"]
OPTIONS = 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest (with two, each forward waits ~0.3 s on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny(task: str, head: str, seed: int = 0, arch=TINY_ARCH, **kwargs) -> TaskModel:
    """A tiny random TaskModel in eval mode whose head (and pooler) weights are N(0, 1), not their init."""
    torch.manual_seed(seed)
    model = TaskModel(task=task, model=None, arch=arch, tokenizer=TINY_TOKENIZER_DIR, head=head, **kwargs)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.normal_()
        if head == "pooler":
            for parameter in model.encoder.pooler.parameters():
                parameter.normal_()
    return model.eval()


def inputs(task: str, rows: int = 3, length: int = 9, seed: int = 1) -> dict:
    """Random ids (specials 0-4 left out) with right padding of different lengths: [B, L] or [B, 4, L]."""
    generator = torch.Generator().manual_seed(seed)
    shape = (rows, OPTIONS, length) if get_task(task).kind == "choice" else (rows, length)
    input_ids = torch.randint(5, TINY_ARCH.vocab_size, shape, generator=generator)
    input_ids[..., 0] = 0  # <s>
    attention_mask = torch.ones(shape, dtype=torch.long)
    for row in range(rows):
        pad = row + 1  # 1, 2, 3 padded positions
        attention_mask[row, ..., length - pad:] = 0
        input_ids[row, ..., length - pad:] = TINY_ARCH.pad_token_id
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def outputs(model, batch: dict) -> torch.Tensor:
    """TaskModel outputs, or a transformers model's logits in the TaskModel's shape ([B] for regression)."""
    with torch.no_grad():
        if isinstance(model, TaskModel):
            return model(**batch)
        logits = model(**batch).logits
    return logits.squeeze(-1) if model.config.problem_type == "regression" else logits


def save_task_folder(model: TaskModel, folder, pair_encoding: str = "bort"):
    to_hf(model).save_pretrained(folder)
    save_tokenizer(model.tokenizer, folder, Template.of(model.tokenizer, pair_encoding))
    return folder


def auto_class(task: str):
    return AutoModelForMultipleChoice if get_task(task).kind == "choice" else AutoModelForSequenceClassification


# -- 1. to_hf ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("task, num_labels", KINDS)
def test_to_hf_equals_task_model(task, num_labels, head):
    model = tiny(task, head)
    hf = to_hf(model)
    spec = get_task(task)
    expected_class = BertForMultipleChoice if spec.kind == "choice" else BertForSequenceClassification
    assert type(hf) is expected_class
    assert not hf.training
    config = hf.config
    assert config.num_labels == num_labels
    assert config.architectures == [expected_class.__name__]
    assert config.finetuning_task == task
    if spec.kind == "classes":
        assert config.problem_type == "single_label_classification"
        assert config.id2label == dict(enumerate(spec.label_names))
        assert config.label2id == {name: i for i, name in enumerate(spec.label_names)}
    elif spec.kind == "regression":
        assert config.problem_type == "regression"
        assert config.id2label == {0: "score"}
    else:  # one score per option; transformers' multiple-choice class has no problem type
        assert config.problem_type is None
        assert config.id2label == {0: "score"}
    batch = inputs(task)
    ours, theirs = outputs(model, batch), outputs(hf, batch)
    assert ours.shape == theirs.shape == ((3, OPTIONS) if spec.kind == "choice" else (3,) if num_labels == 1
                                          else (3, num_labels))
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    # the copy holds its own weights: changing it leaves the task model alone
    with torch.no_grad():
        hf.classifier.weight.add_(1.0)
    torch.testing.assert_close(outputs(model, batch), ours, rtol=0, atol=0)


def test_to_hf_keeps_token_types_and_head_dropout():
    """With two token types the second text's types reach both models alike; the head's dropout is kept."""
    model = tiny("rte", "bort", arch=TINY_ARCH.replace(type_vocab_size=2), dropout=0.3)
    hf = to_hf(model)
    assert hf.config.classifier_dropout == 0.3
    assert hf.config.hidden_dropout_prob == model.encoder.config.hidden_dropout_prob != 0.3
    batch = inputs("rte")
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    batch["token_type_ids"][:, 4:] = 1
    ours = outputs(model, batch)
    assert not torch.allclose(ours, outputs(model, {**batch, "token_type_ids": torch.zeros_like(batch["input_ids"])}))
    torch.testing.assert_close(outputs(hf, batch), ours, rtol=0, atol=1e-5)


# -- 2. saved folders load with the Auto classes -----------------------------------------------------------
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("task, num_labels", KINDS)
def test_saved_folder_loads_with_auto_classes(task, num_labels, head, tmp_path):
    model = tiny(task, head)
    folder = save_task_folder(model, tmp_path / "task")
    loaded, info = auto_class(task).from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert not info["error_msgs"]
    loaded.eval()
    assert type(loaded) is type(to_hf(model))
    assert loaded.config.num_labels == num_labels
    assert loaded.config.finetuning_task == task
    batch = inputs(task)
    torch.testing.assert_close(outputs(loaded, batch), outputs(model, batch), rtol=0, atol=1e-5)


# -- 3. TaskModel restores the head of a task folder -------------------------------------------------------
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("task, num_labels", KINDS)
def test_task_model_restores_its_head(task, num_labels, head, tmp_path):
    model = tiny(task, head)
    folder = save_task_folder(model, tmp_path / "task")
    torch.manual_seed(123)  # the restored model's fresh head would differ from the original's
    restored = TaskModel(task=task, model=str(folder), head=head).eval()
    assert restored.restored_head is True
    batch = inputs(task)
    torch.testing.assert_close(outputs(restored, batch), outputs(model, batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("saved_head, loaded_head", [("bort", "pooler"), ("pooler", "bort")])
def test_heads_restore_into_each_other(saved_head, loaded_head, tmp_path):
    """Both heads are BERT's pooler + classifier, so a folder saved from one restores into the other."""
    model = tiny("mnli", saved_head)
    folder = save_task_folder(model, tmp_path / "task")
    restored = TaskModel(task="mnli", model=str(folder), head=loaded_head).eval()
    assert restored.restored_head is True
    batch = inputs("mnli")
    torch.testing.assert_close(outputs(restored, batch), outputs(model, batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("saved_task", ["sst2", "mnli"])
def test_another_tasks_folder_starts_a_new_head(saved_task, tmp_path):
    """An sst2 folder (2 classes, like rte) or an mnli one (3) loaded for rte: its encoder, a new head."""
    folder = save_task_folder(tiny(saved_task, "bort"), tmp_path / saved_task)
    torch.manual_seed(0)
    model = TaskModel(task="rte", model=str(folder), head="bort").eval()
    assert model.restored_head is False
    saved = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    head = model.head
    assert not torch.equal(head[1].weight, saved.bert.pooler.dense.weight)
    assert head[4].weight.std() < 0.1  # BERT's N(0, 0.02) init, not the saved N(0, 1) weights
    torch.testing.assert_close(model.encoder.embeddings.word_embeddings.weight,
                               saved.bert.embeddings.word_embeddings.weight, rtol=0, atol=0)


def test_same_task_with_other_label_count_is_an_error(tmp_path):
    """A transformers folder fine-tuned "for rte" with three outputs cannot hold an rte head."""
    config = BertConfig(**TINY_ARCH.to_bert_config().to_dict())
    config.num_labels = 3
    config.finetuning_task = "rte"
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "rte3")
    assert json.loads((tmp_path / "rte3" / "config.json").read_text())["finetuning_task"] == "rte"
    with pytest.raises(BortzooError, match=r"3 outputs; task rte needs 2"):
        TaskModel(task="rte", model=str(tmp_path / "rte3"), tokenizer=TINY_TOKENIZER_DIR, head="bort")


def test_same_task_with_its_labels_in_another_order_is_an_error(tmp_path):
    """Restoring a head whose label names are swapped relative to the task spec would silently swap predictions."""
    model = tiny("rte", "bort")
    folder = save_task_folder(model, tmp_path / "swapped")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "not_entailment", "1": "entailment"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BortzooError, match="would swap them"):
        TaskModel(task="rte", model=str(folder), tokenizer=TINY_TOKENIZER_DIR, head="bort")


def test_head_restores_from_a_pytorch_bin_folder(tmp_path):
    """Older task folders hold pytorch_model.bin; its head is read weights-only, like the encoder."""
    from bortzoo.convert import to_hf

    model = tiny("rte", "bort").eval()
    folder = tmp_path / "bin"
    hf = to_hf(model)
    hf.config.save_pretrained(folder)
    torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    restored = TaskModel(task="rte", model=str(folder), tokenizer=TINY_TOKENIZER_DIR, head="bort").eval()
    assert restored.restored_head
    batch = inputs("rte")
    torch.testing.assert_close(outputs(restored, batch), outputs(model, batch), atol=1e-5, rtol=1e-4)


def test_roberta_task_folder_of_the_same_task_starts_a_new_head(tmp_path):
    """RoBERTa's head (classifier.dense / classifier.out_proj) is not BERT's: its encoder, a new head."""
    config = RobertaConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=66, num_labels=2, finetuning_task="rte",
                           architectures=["RobertaForSequenceClassification"])
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(tmp_path / "roberta-rte")
    with pytest.warns(UserWarning, match="'roberta' model fine-tuned for rte"):
        model = TaskModel(task="rte", model=str(tmp_path / "roberta-rte"), tokenizer=TINY_TOKENIZER_DIR, head="bort")
    assert model.restored_head is False
    assert model.encoder.config.model_type == "roberta"


def test_encoder_folder_starts_a_new_head(bort_layout_dir):
    for head in HEADS:
        model = TaskModel(task="rte", model=str(bort_layout_dir), head=head)
        assert model.restored_head is False


# -- 4. the pair template goes with the tokenizer ----------------------------------------------------------
PAIRS = [("a b", "c d"), ("hello world", "x"), ("The cat sat.", "On the mat, it did!")]
SINGLES = ["a b", "hello world", "The cat sat on the mat."]


def test_bort_pair_template_is_baked_into_the_saved_tokenizer(tiny_tokenizer_dir, tmp_path):
    tok = load_tokenizer(tiny_tokenizer_dir)
    bort = Template.of(tok, "bort")
    assert Template.of(tok, "tokenizer") != bort  # RoBERTa's own template has two separators
    save_tokenizer(tok, tmp_path, bort)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    start, end = [tok.cls_token_id], [tok.sep_token_id]
    for first, second in PAIRS:
        a = tok(first, add_special_tokens=False)["input_ids"]
        b = tok(second, add_special_tokens=False)["input_ids"]
        assert reloaded(first, second)["input_ids"] == [*start, *a, *end, *b, *end]  # <s> A </s> B </s>
        assert tok(first, second)["input_ids"] == [*start, *a, *end, *end, *b, *end]  # <s> A </s></s> B </s>
    for text in SINGLES:
        assert reloaded(text)["input_ids"] == tok(text)["input_ids"]
    assert Template.of(reloaded, "tokenizer") == bort
    assert reloaded.pad_token_id == tok.pad_token_id and reloaded.mask_token_id == tok.mask_token_id
    assert len(reloaded) == len(tok)


def test_tokenizer_template_saves_the_tokenizer_unchanged(tiny_tokenizer_dir, tmp_path):
    tok = load_tokenizer(tiny_tokenizer_dir)
    save_tokenizer(tok, tmp_path, Template.of(tok, "tokenizer"))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config.get("tokenizer_class") != "PreTrainedTokenizerFast"
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for first, second in PAIRS:
        ids = reloaded(first, second)["input_ids"]
        assert ids == tok(first, second)["input_ids"]
        assert ids.count(tok.sep_token_id) == 3  # A </s></s> B </s>
    for text in SINGLES:
        assert reloaded(text)["input_ids"] == tok(text)["input_ids"]
    assert Template.of(reloaded, "tokenizer") == Template.of(tok, "tokenizer")


def test_task_folder_tokenizer_encodes_pairs_like_training(tmp_path):
    """A whole task folder: its tokenizer writes the template the model was fine-tuned with."""
    model = tiny("rte", "bort")
    folder = save_task_folder(model, tmp_path / "task", pair_encoding="bort")
    reloaded = AutoTokenizer.from_pretrained(folder)
    assert Template.of(reloaded) == Template.of(model.tokenizer, "bort")


# -- 5. only BERT encoders map onto transformers' BERT task classes ------------------------------------------
def test_non_bert_encoder_is_refused(tmp_path):
    from transformers import RobertaForMaskedLM

    config = RobertaConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=66)
    RobertaForMaskedLM(config).save_pretrained(tmp_path / "roberta")
    model = TaskModel(task="rte", model=str(tmp_path / "roberta"), tokenizer=TINY_TOKENIZER_DIR, head="bort")
    assert model.encoder.config.model_type == "roberta"
    with pytest.raises(BortzooError, match="'roberta'"):
        hf_task_config(model)
    with pytest.raises(BortzooError, match="'roberta'"):
        to_hf(model)
