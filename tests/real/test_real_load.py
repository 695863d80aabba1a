"""The real encoder through bortzoo's loaders: its folder has sentence-transformers extras (modules.json,
1_Pooling/), a WordPiece tokenizer.json, a pretrained pooler and two token types; what bortzoo loads must be
exactly the stored weights, and embed sentences as sentence-transformers itself does."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import bortzoo
from bortzoo.hub import load_encoder, load_tokenizer, stored_dtype, untrained_mlm_head, weight_names

SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]


def test_hub_loads_exactly_the_stored_weights(minilm_dir):
    stored = load_file(str(minilm_dir / "model.safetensors"))
    encoder = load_encoder(str(minilm_dir))
    state = encoder.state_dict()
    checked = [name for name in stored if name in state]
    assert len(checked) >= 100 and "pooler.dense.weight" in checked
    for name in checked:
        assert torch.equal(state[name], stored[name]), name
    assert stored_dtype(minilm_dir) == "float32"
    assert "pooler.dense.weight" in weight_names(minilm_dir)
    assert not untrained_mlm_head(minilm_dir)  # no masked-LM head at all
    tokenizer = load_tokenizer(str(minilm_dir))
    assert tokenizer("hello world")["input_ids"] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]


def test_bortzoo_load_gives_the_encoder_in_eval_mode_in_float32(minilm_dir, recwarn):
    from transformers import BertModel

    model, tokenizer = bortzoo.load(str(minilm_dir))
    assert type(model) is BertModel and not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not [w for w in recwarn if "masked-LM head" in str(w.message)]
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        first, second = model(**batch).last_hidden_state, model(**batch).last_hidden_state
    assert torch.equal(first, second)


def test_sentence_embeddings_equal_sentence_transformers_own(minilm_dir):
    """Mean pooling + L2 normalisation of what bortzoo loaded = SentenceTransformer(folder).encode."""
    from sentence_transformers import SentenceTransformer

    model, tokenizer = bortzoo.load(str(minilm_dir))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-5, rtol=1e-4)
    similarity = ours @ ours.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3, similarity  # a real encoder: meaning, not tokens


@pytest.mark.parametrize("head", ["bort", "pooler"])
def test_task_model_starts_from_the_real_weights(minilm_dir, head, recwarn):
    from bortzoo.modules import TaskModel

    stored = load_file(str(minilm_dir / "model.safetensors"))
    model = TaskModel(task="rte", model=str(minilm_dir), head=head)
    for name, value in model.encoder.state_dict().items():
        if name in stored:
            assert torch.equal(value, stored[name]), name
    assert model.encoder.training and model.training
    assert not [w for w in recwarn if "pooler" in str(w.message)]  # this checkpoint has a pretrained pooler
    if head == "pooler":
        assert torch.equal(model.encoder.pooler.dense.weight, stored["pooler.dense.weight"])
