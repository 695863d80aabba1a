"""A real pretrained encoder fine-tuned through `bortzoo fit`: dropout on in every step, transfer (it beats the same
architecture from random initialisation at equal steps), and the published folder reloading with identical logits
through plain transformers, `bortzoo.load` and `TaskModel`."""

from __future__ import annotations

import torch

from real.real_support import STEPS


def accuracy(results: dict) -> float:
    return results["final"]["splits"]["SST-2"]["accuracy"]


def test_every_dropout_is_on_in_every_training_step(real_runs):
    """The real checkpoint comes out of from_pretrained in eval mode; Lightning would keep it there."""
    _, probe, _ = real_runs["pretrained"]
    assert len(probe) == STEPS
    assert probe[0]["total"] == 2 + 6 * 3 + 1  # head, 6 layers x (attention probs, attention out, ffn out), embeddings
    assert all(step["active"] == step["total"] for step in probe), probe[:3]
    assert [step["differ"] for step in probe[:3]] == [True] * 3
    assert all(step["dtypes"] == ["torch.float32"] for step in probe)


def test_the_pretrained_encoder_transfers_what_random_weights_cannot(real_runs):
    """Validation uses sentiment words training never shows: only pretraining knows them."""
    real, random_init = accuracy(real_runs["pretrained"][0]), accuracy(real_runs["random"][0])
    print(f"held-out sentiment words, {STEPS} steps: pretrained {real:.3f}, random init {random_init:.3f}")
    assert real >= 0.85, real_runs["pretrained"][0]["final"]
    assert real >= random_init + 0.2, (real, random_init)


def test_the_published_folder_reloads_with_identical_logits(real_runs, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import bortzoo
    from bortzoo.modules import TaskModel
    from bortzoo.publish.build import build_folder
    from bortzoo.publish.run_folder import read_run

    _, _, out = real_runs["pretrained"]
    run = read_run(out)
    folder = build_folder(run, tmp_path / "hub")
    original = TaskModel.load_from_checkpoint(str(run.checkpoint), map_location="cpu", weights_only=True).eval()
    texts = ["the concert was superb.", "what a lousy trip.", "i thought the ending was mediocre."]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert "token_type_ids" in batch  # WordPiece BERT: two token types, unlike Bort
    with torch.no_grad():
        expected = original(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        torch.testing.assert_close(plain(**batch).logits, expected, atol=1e-5, rtol=1e-4)
        loaded, loaded_tokenizer = bortzoo.load(str(folder))
        torch.testing.assert_close(loaded(**loaded_tokenizer(texts, padding=True, return_tensors="pt")).logits, expected,
                                   atol=1e-5, rtol=1e-4)
        restored = TaskModel(task="sst2", model=str(folder), head="bort").eval()
        assert restored.restored_head
        torch.testing.assert_close(restored(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]),
                                   expected, atol=1e-5, rtol=1e-4)
    assert plain.config.id2label == {0: "negative", 1: "positive"}
    assert expected.argmax(-1).tolist() == [1, 0, 0]
