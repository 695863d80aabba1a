"""Arch: exact counts against transformers for all 300 candidates and the presets, FLOPs, bad input."""

import pytest
import torch
from transformers import BertForMaskedLM, BertModel, RobertaConfig, RobertaForMaskedLM

from bortzoo.arch import PRESETS, Arch, get_arch, search_space
from bortzoo.errors import BortzooError


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def counted(arch: Arch) -> dict[str, int]:
    """Parameter counts of the transformers models built from `arch`, on the meta device (no memory)."""
    config = arch.to_bert_config()
    with torch.device("meta"):
        mlm = BertForMaskedLM(config)
        pooled = BertModel(config, add_pooling_layer=True)
    return {
        "total": numel(mlm),
        "embeddings": numel(mlm.bert.embeddings),
        "encoder": numel(mlm.bert.encoder),
        # the decoder weight is tied to the word embeddings: counted once, in the embeddings
        "head": numel(mlm) - numel(mlm.bert),
        "with_pooler": numel(pooled),
    }


@pytest.mark.parametrize("arch", search_space() + list(PRESETS.values()), ids=lambda a: a.short())
def test_counts_equal_transformers(arch):
    real = counted(arch)
    assert arch.embedding_params == real["embeddings"]
    assert arch.encoder_params == real["encoder"]
    assert arch.mlm_head_params == real["head"]
    assert arch.total_params() == real["total"]
    assert arch.total_params(mlm_head=False, pooler=True) == real["with_pooler"]


def test_roberta_large_preset_counts_as_roberta():
    arch = PRESETS["roberta-large"]
    config = RobertaConfig(vocab_size=arch.vocab_size, hidden_size=arch.hidden, num_hidden_layers=arch.depth,
                           num_attention_heads=arch.heads, intermediate_size=arch.intermediate,
                           max_position_embeddings=arch.max_positions, type_vocab_size=1)
    with torch.device("meta"):
        model = RobertaForMaskedLM(config)
    assert arch.total_params() == numel(model) == 355_412_057


def test_search_space_is_the_papers():
    space = search_space()
    assert len(space) == 300
    assert len(set(space)) == 300
    assert all(a.hidden % a.heads == 0 for a in space)
    assert PRESETS["bort"] in space
    assert {a.depth for a in space} == {2, 4, 6, 8, 10, 12}
    assert (4, 12, 1024, 768) not in {(a.depth, a.heads, a.hidden, a.intermediate) for a in space}


def test_bort_is_the_released_shape_not_the_typo():
    bort = get_arch("bort")
    assert (bort.depth, bort.heads, bort.hidden, bort.intermediate) == (4, 8, 1024, 768)
    assert bort.vocab_size == 50_265
    # BORT_FACTS: ~52M embeddings + ~23M encoder ≈ 75M, never the README's 56M
    assert round(bort.embedding_params / 1e6) == 52
    assert round(bort.encoder_params / 1e6) == 23
    assert 75e6 < bort.total_params(mlm_head=False) < 76e6


def test_flops_match_the_facts():
    gflops = {name: PRESETS[name].encoder_flops(128) / 1e9 for name in ("bort", "bert-base", "bert-large")}
    assert gflops["bort"] == pytest.approx(6.17, abs=0.01)
    assert gflops["bert-base"] == pytest.approx(22.35, abs=0.01)
    assert gflops["bert-large"] == pytest.approx(78.92, abs=0.01)
    assert gflops["bert-large"] / gflops["bort"] == pytest.approx(12.78, abs=0.01)


def test_flops_equal_torch_flop_counter():
    """The analytic count equals what torch counts for the real encoder's matmuls."""
    from torch.utils.flop_counter import FlopCounterMode

    arch = Arch(3, 4, 64, 96, vocab_size=100, max_positions=64)
    # eager attention: its score and weighted-sum matmuls are visible to the counter (CPU SDPA hides them)
    model = BertModel(arch.to_bert_config(attn_implementation="eager"), add_pooling_layer=False).eval()
    ids = torch.randint(0, 100, (2, 16))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    assert counter.get_total_flops() == arch.encoder_flops(seq_len=16, batch=2)


def test_bert_config_matches_released_bort():
    config = get_arch("bort").to_bert_config()
    expected = dict(model_type="bert", hidden_size=1024, intermediate_size=768, num_hidden_layers=4,
                    num_attention_heads=8, vocab_size=50265, max_position_embeddings=512, type_vocab_size=1,
                    layer_norm_eps=1e-5, pad_token_id=1, hidden_act="gelu", hidden_dropout_prob=0.1,
                    attention_probs_dropout_prob=0.1, initializer_range=0.02)
    assert {k: getattr(config, k) for k in expected} == expected


def test_from_config_round_trip():
    for arch in PRESETS.values():
        assert Arch.from_config(arch.to_bert_config()) == arch
        assert Arch.from_config(arch.to_bert_config().to_dict()) == arch


@pytest.mark.parametrize("text", ["4,8,1024,768", "<4,8,1024,768>", " ⟨4, 8, 1024, 768⟩ ", "BORT"])
def test_get_arch_parses(text):
    assert get_arch(text) == PRESETS["bort"]


def test_get_arch_from_dict_and_arch():
    arch = get_arch({"depth": 2, "heads": 2, "hidden": 32, "intermediate": 64, "vocab_size": 10})
    assert arch == Arch(2, 2, 32, 64, vocab_size=10)
    assert get_arch(arch) is arch


@pytest.mark.parametrize(
    "spec, words",
    [
        ("bortt", ["'bortt'", "Did you mean 'bort'", "D,A,H,I"]),
        ("4,8,1024", ["'4,8,1024'", "preset"]),
        ({"depth": 2, "heads": 2, "hidden": 32, "intermediate": 64, "layers": 3}, ["layers"]),
        ({"depth": 2}, ["incomplete"]),
        (3.5, ["float"]),
    ],
)
def test_get_arch_rejects(spec, words):
    with pytest.raises(BortzooError) as info:
        get_arch(spec)
    for word in words:
        assert word in str(info.value)


def test_malformed_arch_is_named():
    with pytest.raises(BortzooError, match=r"H=1024 is not divisible .* A=12"):
        Arch(4, 12, 1024, 768)
    with pytest.raises(BortzooError, match=r"depth must be a positive integer, got 0"):
        Arch(0, 8, 1024, 768)
    with pytest.raises(BortzooError, match=r"pad_token_id=1 is outside"):
        Arch(1, 1, 8, 8, vocab_size=1)
    with pytest.raises(BortzooError, match="seq_len"):
        PRESETS["bort"].encoder_flops(0)
    with pytest.raises(BortzooError, match="unknown Arch field"):
        PRESETS["bort"].replace(width=3)
