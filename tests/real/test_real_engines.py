"""Every serving engine on real weights: real BERT activations have outlier channels that random weights lack, so an
int8 scheme that looks right on random weights can disagree with fp32 on real text. Each engine and scheme installed
here serves the real fine-tuned encoder of this suite; its hidden states (real sentence pairs, padded left and
right), its agreement with fp32 and its metric are measured independently, and `optimize(engine="auto", check=...)`
must keep exactly the ones that hold the bar (99% agreement, metric within 0.5 points) and choose among them. CI runs
this file natively and under AVX2 emulation."""

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
    """The real encoder fine-tuned on the sentiment task, as a transformers model, 200 real sentences, the tokenizer."""
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
    return model, batches, labels, tokenizer


def accuracy(predictions: torch.Tensor, target: torch.Tensor) -> float:
    return float((predictions == target).float().mean() * 100)


def _predict(model, batches) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(**b).logits for b in batches])


def _hidden_error(served, encoder, batches) -> float:
    """Relative error of the served encoder's last hidden state over the real tokens of `batches`."""
    errors = []
    with torch.inference_mode():
        for batch in batches:
            mask = batch["attention_mask"].bool()
            want = encoder(**batch).last_hidden_state[mask]
            errors.append(float((served(**batch).last_hidden_state[mask] - want).norm() / want.norm()))
    return max(errors)


def test_auto_keeps_exactly_the_engines_that_hold_on_real_text_and_picks_among_them(fine_tune, tmp_path, monkeypatch):
    from bortzoo.serve import optimize as opt_mod

    model, batches, labels, tokenizer = fine_tune
    # what a refused named engine suggests instead is measured in tests/test_engine_choice.py; here it would time
    # every other engine once more per refusal
    monkeypatch.setattr(opt_mod._Selector, "_fastest_other", lambda self: "(not measured here)")
    pairs = [("A man is playing a guitar.", "Someone plays music."),
             ("The stock market fell sharply today after the report.", "Prices dropped."),
             ("the movie was superb.", "I loved it")]
    right = dict(tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt"))
    tokenizer.padding_side = "left"
    left = dict(tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt"))
    assert left["attention_mask"][:, 0].min() == 0 and (left["token_type_ids"] == 1).any()  # both paddings, two types
    reference = _predict(model, batches)
    target = torch.tensor(labels)
    fp32_metric = accuracy(reference.argmax(-1), target)
    measured, refused, errors = {}, {}, {}
    for cand in candidates("auto"):
        if cand.status == "not applicable":  # bf16 without native bf16 (the AVX2 emulation)
            assert "native bf16" in cand.reason
            continue
        assert cand.status == "pending", f"{cand.name} cannot run here: {cand.reason}"  # the serve extra is installed
        try:  # static int8 is calibrated on these real sentences, as auto does with check= batches
            served = optimize(model, cand.engine, scheme=cand.scheme, cache_dir=tmp_path, check=batches,
                              min_agreement=0.0, max_metric_drop=100.0)  # measured below, not enforced here
        except BortzooError as err:  # its output is too far off on the self-check's tokens already
            refused[cand.name] = str(err)
            continue
        errors[cand.name] = _hidden_error(served.bert, model.bert, [right, left])
        predictions = _predict(served, batches)
        agreement = float((predictions.argmax(-1) == reference.argmax(-1)).float().mean())
        change = accuracy(predictions.argmax(-1), target) - fp32_metric
        measured[cand.name] = (agreement, change)
    print(f"\nreal fine-tune, {len(labels)} sentences, {cpu_summary()}: fp32 accuracy {fp32_metric:.2f}")
    for name, (agreement, change) in measured.items():
        print(f"  {name:22s} agreement {agreement:.2%}  accuracy change {change:+.2f}  "
              f"hidden-state error {errors[name]:.4f}")
    for name, why in refused.items():
        print(f"  {name:22s} refused: {why.split(': ', 2)[-1][:150]}")
        assert "off the original's" in why  # refused by the self-check, with the measured error
    for name, error in errors.items():  # what the self-check let through reproduces real hidden states
        assert error <= {"fp32": 1e-3, "bf16": 0.05, "int8": 0.15}[name.split("-")[1]], (name, error)

    fast = optimize(model, "auto", check=batches, labels=labels, metric=accuracy, shapes=[(2, 16)], cache_dir=tmp_path)
    report = fast.bortzoo_report
    for cand in report.candidates:
        if cand.status == "not applicable":
            continue
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
    # every engine has an int8 scheme that holds the bar on real text (the guard decides which one serves)
    holding = {n.split("-")[0] for n, m in measured.items()
               if n.split("-")[1] == "int8" and m[0] >= MIN_AGREEMENT and m[1] >= -MAX_METRIC_DROP}
    assert holding == {c.engine for c in candidates("auto") if c.status == "pending"}, measured

