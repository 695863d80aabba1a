"""int8 on real weights: real activations have outlier channels that random weights lack, and the accuracy guard
must tell the truth about what int8 costs a real fine-tune on whatever CPU runs this (AVX2 without VNNI
saturates oneDNN's int8 arithmetic; issue 20 owns making it exact). Whatever the CPU, `optimize(check=...)` returns
a copy only when its agreement with fp32, measured independently here, holds the bar, and otherwise refuses,
naming the same measured agreement."""

from __future__ import annotations

import pytest
import torch

from bortzoo.cpu_inference import cpu_flags, int8_backend, optimize
from bortzoo.errors import BortzooError
from real.sentiment import HELD_OUT_WORDS, TRAIN_WORDS, rows

SENTENCES = ["the movie was superb.", "A man is playing a guitar.", "The stock market fell sharply today."]


def channel_outliers(model, batch) -> list[float]:
    """Per layer input: the largest channel's peak |activation| over the median channel's."""
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    peaks = [h.abs().amax(dim=(0, 1)) for h in hidden]
    return [float(p.max() / p.median()) for p in peaks]


def test_real_activations_have_outlier_channels_random_ones_lack(minilm_dir):
    from transformers import AutoTokenizer, BertModel

    real = BertModel.from_pretrained(minilm_dir).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random_init = BertModel(real.config).eval()
    batch = AutoTokenizer.from_pretrained(minilm_dir)(SENTENCES, padding=True, return_tensors="pt")
    real_ratio, random_ratio = channel_outliers(real, batch), channel_outliers(random_init, batch)
    print("outlier ratio per layer, real:", [round(r, 1) for r in real_ratio],
          "random:", [round(r, 1) for r in random_ratio])
    assert max(real_ratio[1:-1]) > 5 and max(random_ratio) < 3, (real_ratio, random_ratio)


def test_the_int8_guard_tells_the_truth_about_a_real_fine_tune(real_runs):
    from transformers import AutoTokenizer

    from bortzoo.hf_task import to_hf
    from bortzoo.modules import TaskModel
    from bortzoo.runs import read_run

    _, _, out = real_runs["pretrained"]
    task_model = TaskModel.load_from_checkpoint(str(read_run(out).checkpoint), map_location="cpu", weights_only=True)
    model = to_hf(task_model)
    tokenizer = AutoTokenizer.from_pretrained(task_model.tokenizer_ref)
    texts = [row["sentence"] for words in (TRAIN_WORDS, HELD_OUT_WORDS) for row in rows(words, 100, 7)]
    batches = [dict(tokenizer(texts[i:i + 40], padding=True, return_tensors="pt")) for i in range(0, len(texts), 40)]
    copy = optimize(model, precision="int8")
    with torch.inference_mode():
        reference = torch.cat([model(**b).logits for b in batches]).argmax(-1)
        quantised = torch.cat([copy(**b).logits for b in batches]).argmax(-1)
    agreement = float((reference == quantised).float().mean())
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512_vnni", "avx_vnni", "amx", "avx512f", "avx2")))
    print(f"int8 ({int8_backend()}) agrees with fp32 on {agreement:.2%} of {len(texts)} real sentences; CPU flags {flags}")
    if agreement >= 0.99:
        checked = optimize(model, precision="int8", check=batches, min_agreement=0.99)
        assert checked.bortzoo_guard.agreement == pytest.approx(agreement)
        assert checked.bortzoo_guard.examples == len(texts)
    else:
        with pytest.raises(BortzooError, match=f"agrees with fp32 on {agreement:.2%} of {len(texts)} examples"):
            optimize(model, precision="int8", check=batches, min_agreement=0.99)
