"""Every serving engine on real weights: real BERT activations have outlier channels that random weights lack, so an
int8 scheme that looks right on random weights can disagree with fp32 on real text. Each engine and scheme installed
here serves the real fine-tuned encoder of this suite; its agreement with fp32 and its metric are measured
independently, and `optimize(engine="auto", check=...)` must keep exactly the ones that hold the bar (99% agreement,
metric within 0.5 points) and choose among them. CI runs this file natively and under AVX2 emulation."""

from __future__ import annotations

import pytest
import torch

from bortzoo.errors import BortzooError
from bortzoo.serve.cpu import cpu_summary
from bortzoo.serve.optimize import candidates, optimize
from real.sentiment import HELD_OUT_WORDS, TRAIN_WORDS, rows

pytestmark = pytest.mark.cpu_sensitive

MIN_AGREEMENT, MAX_METRIC_DROP = 0.99, 0.5


@pytest.fixture(scope="module")
def fine_tune(real_runs):
    """The real encoder fine-tuned on the sentiment task, as a transformers model, with 200 real sentences."""
    from transformers import AutoTokenizer

    from bortzoo.convert import to_hf
    from bortzoo.modules import TaskModel
    from bortzoo.publish.run_folder import read_run

    _, _, out = real_runs["pretrained"]
    task_model = TaskModel.load_from_checkpoint(str(read_run(out).checkpoint), map_location="cpu", weights_only=True)
    model = to_hf(task_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(task_model.tokenizer_ref)
    examples = [row for words in (TRAIN_WORDS, HELD_OUT_WORDS) for row in rows(words, 100, 7)]
    texts, labels = [r["sentence"] for r in examples], [r["label"] for r in examples]
    batches = [dict(tokenizer(texts[i:i + 40], padding=True, return_tensors="pt")) for i in range(0, len(texts), 40)]
    return model, batches, labels


def accuracy(predictions: torch.Tensor, target: torch.Tensor) -> float:
    return float((predictions == target).float().mean() * 100)


def _predict(model, batches) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(**b).logits for b in batches])


def test_auto_keeps_exactly_the_engines_that_hold_on_real_text_and_picks_among_them(fine_tune, tmp_path):
    model, batches, labels = fine_tune
    reference = _predict(model, batches)
    target = torch.tensor(labels)
    fp32_metric = accuracy(reference.argmax(-1), target)
    measured, refused = {}, {}
    for cand in candidates("auto"):
        assert cand.status == "pending", f"{cand.name} cannot run here: {cand.reason}"  # the serve extra is installed
        try:
            served = optimize(model, cand.engine, scheme=cand.scheme, cache_dir=tmp_path)  # the self-check only
        except BortzooError as err:  # its output is too far off on the self-check's tokens already
            refused[cand.name] = str(err)
            continue
        predictions = _predict(served, batches)
        agreement = float((predictions.argmax(-1) == reference.argmax(-1)).float().mean())
        change = accuracy(predictions.argmax(-1), target) - fp32_metric
        measured[cand.name] = (agreement, change)
    print(f"\nreal fine-tune, {len(labels)} sentences, {cpu_summary()}: fp32 accuracy {fp32_metric:.2f}")
    for name, (agreement, change) in measured.items():
        print(f"  {name:22s} agreement {agreement:.2%}  accuracy change {change:+.2f}")
    for name, why in refused.items():
        print(f"  {name:22s} refused by its self-check: {why.split(': ', 2)[-1][:160]}")

    fast = optimize(model, "auto", check=batches, labels=labels, metric=accuracy, shapes=[(8, 32)], cache_dir=tmp_path)
    report = fast.bortzoo_report
    for cand in report.candidates:
        if cand.name in refused:
            assert cand.status == "failed guard", (cand.name, cand.status)
            continue
        agreement, change = measured[cand.name]
        holds = agreement >= MIN_AGREEMENT and change >= -MAX_METRIC_DROP
        assert (cand.status in ("chosen", "held")) == holds, (cand.name, cand.status, cand.reason, agreement, change)
        if holds:
            assert cand.agreement == pytest.approx(agreement)
    chosen_agreement, chosen_change = measured[report.chosen]
    assert chosen_agreement >= MIN_AGREEMENT and chosen_change >= -MAX_METRIC_DROP
    # every engine has a scheme that holds the bar on real text (the guard decides which one serves)
    holding = {n.split("-")[0] for n, m in measured.items() if m[0] >= MIN_AGREEMENT and m[1] >= -MAX_METRIC_DROP}
    assert holding == {c.engine for c in candidates("auto")}, measured


def test_every_engine_reproduces_the_real_encoders_hidden_states(minilm_dir, tmp_path):
    """The bare encoder on real sentences (outlier channels included), padded left and right, two token types."""
    from transformers import AutoTokenizer, BertModel

    encoder = BertModel.from_pretrained(minilm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    pairs = [("A man is playing a guitar.", "Someone plays music."),
             ("The stock market fell sharply today after the report.", "Prices dropped."),
             ("the movie was superb.", "I loved it")]
    batch = dict(tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt"))
    left = {k: v.flip(-1) for k, v in batch.items()}  # the same rows padded on the left instead (order reversed)
    with torch.inference_mode():
        expected = encoder(**batch).last_hidden_state
        expected_left = encoder(**left).last_hidden_state
    real = batch["attention_mask"].bool()
    bounds = {"fp32": 1e-3, "bf16": 0.05, "int8": 0.15}
    for cand in candidates("auto"):
        served = optimize(encoder, cand.engine, scheme=cand.scheme, cache_dir=tmp_path)
        with torch.inference_mode():
            for inputs, want in ((batch, expected), (left, expected_left)):
                got = served(**inputs).last_hidden_state
                mask = inputs["attention_mask"].bool()
                error = float((got[mask] - want[mask]).norm() / want[mask].norm())
                assert error <= bounds[cand.scheme.split("-")[0]], (cand.name, error)
        assert real.sum() == mask.sum()
