"""Agora transforms: rewritten rows keep the dataset's schema, are reproducible, and really differ."""

import copy
from collections import Counter

import pytest
from conftest import TINY_ARCH

from bortzoo.agora import transforms as tr
from bortzoo.agora.transforms import TRANSFORMS, MaskedLMReplace, TokenEdit, Transform, get_transform
from bortzoo.errors import BortzooError

LONG = "the green dog carries a bright library after the rain while the heavy teacher paints a mountain at night"
RTE_ROWS = [
    {"sentence1": "the capital of france is paris. the old window watches a tired student.",
     "sentence2": "paris is in france.", "label": 0, "idx": 7},
    {"sentence1": "the quick teacher finds a distant child at night.",
     "sentence2": "a child is found by the teacher.", "label": 1, "idx": 12},
    {"sentence1": "the small storm builds a tired ship at night.", "sentence2": "a ship is built.", "label": 0,
     "idx": 30},
]
FIELDS = ("sentence1", "sentence2")


class Upper(Transform):
    """A user transform: only `rewrite` is written, `__call__` does the rows."""

    name = "upper"

    def __init__(self):
        self.calls = []

    def rewrite(self, texts, seed):
        self.calls.append((list(texts), seed))
        return [t.upper() for t in texts]


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from bortzoo.export import write_random_masked_lm

    return str(write_random_masked_lm(tmp_path_factory.mktemp("tiny-mlm"), TINY_ARCH, seed=0))


# --- TokenEdit ------------------------------------------------------------------------------------------------


def test_token_edit_is_deterministic_and_seed_dependent():
    edit = TokenEdit()
    texts = [LONG, "the capital of italy is rome.", LONG]
    assert edit.rewrite(texts, 3) == edit.rewrite(texts, 3)
    outputs = {edit.rewrite([LONG], seed)[0] for seed in range(10)}
    assert len(outputs) >= 6 and LONG not in outputs
    # the seed of a text depends on (seed, index), not on the other texts of the batch
    assert edit.rewrite(["a b c d e f", LONG], 5)[1] == edit.rewrite(["x y", LONG], 5)[1]
    # two copies of a text at different positions are edited differently
    first, _, third = edit.rewrite(texts, 3)
    assert first != third


def test_token_edit_only_drops_and_reorders_source_words():
    source = LONG.split()
    for seed in range(20):
        out = TokenEdit(drop=0.3, swap=0.5).rewrite([LONG], seed)[0].split()
        assert 1 <= len(out) <= len(source), out  # words only dropped, never added
        assert not Counter(out) - Counter(source), out  # and every word is one of the source's


def test_token_edit_never_empty_and_one_word_unchanged():
    edit = TokenEdit(drop=0.99, swap=1.0)
    for seed in range(20):
        out = edit.rewrite([LONG, "hello", "two words"], seed)
        assert all(text.strip() for text in out)
        assert out[0].split()[0] in LONG.split()
        assert out[1] == "hello"
    assert TokenEdit().rewrite(["", "  "], 0) == ["", "  "]


def test_token_edit_every_variant_differs_from_source():
    sources = ["two words", "the capital of italy is rome.", LONG]
    for drop, swap in ((0.0, 0.0), (0.1, 0.1), (0.5, 0.0)):
        for seed in range(10):
            for src, out in zip(sources, TokenEdit(drop=drop, swap=swap).rewrite(sources, seed)):
                assert out != src
    # nothing drawn (drop = swap = 0): exactly one adjacent pair is swapped
    out = TokenEdit(drop=0.0, swap=0.0).rewrite(["a b c d e"], 1)[0].split()
    moved = [i for i, (x, y) in enumerate(zip(out, "a b c d e".split())) if x != y]
    assert len(moved) == 2 and moved[1] == moved[0] + 1
    # no two different words to swap: unchanged, nothing else possible
    assert TokenEdit(drop=0.0, swap=0.0).rewrite(["so so"], 0) == ["so so"]


def test_token_edit_does_not_swap_a_swapped_word_again():
    for seed in range(5):
        assert TokenEdit(drop=0.0, swap=1.0).rewrite(["a b c d e f g"], seed) == ["b a d c f e g"]


@pytest.mark.parametrize("kwargs, arg", [({"drop": 1.0}, "drop"), ({"drop": -0.1}, "drop"),
                                         ({"swap": 1.5}, "swap"), ({"swap": -0.01}, "swap")])
def test_token_edit_rejects_bad_probabilities(kwargs, arg):
    with pytest.raises(BortzooError, match=arg):
        TokenEdit(**kwargs)
    TokenEdit(drop=0.0, swap=1.0)  # the bounds that are allowed


# --- Transform.__call__ on dataset rows -----------------------------------------------------------------------


def test_call_rewrites_only_the_fields_and_keeps_the_pair():
    rows = copy.deepcopy(RTE_ROWS)
    rows[0]["extra"] = [1, 2]
    before = copy.deepcopy(rows)
    out = TokenEdit()(rows, FIELDS, variants=3, seed=0)
    assert rows == before  # sources untouched
    assert len(out) == len(rows) and all(len(variants) == 3 for variants in out)
    for src, variants in zip(rows, out):
        for new in variants:
            assert set(new) == set(src)
            assert all(isinstance(new[f], str) and new[f] for f in FIELDS)
            assert new["label"] == src["label"] and new["idx"] == src["idx"]
            assert new["sentence1"] != src["sentence1"] and new["sentence2"] != src["sentence2"]
        assert len({(v["sentence1"], v["sentence2"]) for v in variants}) == 3  # the variants differ
    out[0][0]["extra"].append(3)
    assert rows[0]["extra"] == [1, 2]  # copies, not shared objects
    assert TokenEdit()(rows, FIELDS, variants=3, seed=0)[1:] == out[1:]
    assert TokenEdit()(rows, FIELDS, variants=3, seed=1) != out


def test_call_with_one_field_copies_the_other():
    out = TokenEdit()(RTE_ROWS, ("sentence2",), variants=2, seed=0)
    for src, variants in zip(RTE_ROWS, out):
        for new in variants:
            assert new["sentence1"] == src["sentence1"] and new["sentence2"] != src["sentence2"]


def test_call_batches_rewrite_per_variant_and_field():
    upper = Upper()
    out = upper(RTE_ROWS, FIELDS, variants=2, seed=4)
    assert len(upper.calls) == 4  # (variant, field) pairs, each over the whole batch
    assert [texts for texts, _ in upper.calls] == [[r[f] for r in RTE_ROWS] for _ in range(2) for f in FIELDS]
    seeds = [seed for _, seed in upper.calls]
    assert len(set(seeds)) == 4
    again = Upper()
    again(RTE_ROWS, FIELDS, variants=2, seed=4)
    assert [seed for _, seed in again.calls] == seeds
    assert out[1][0] == {**RTE_ROWS[1], "sentence1": RTE_ROWS[1]["sentence1"].upper(),
                         "sentence2": RTE_ROWS[1]["sentence2"].upper()}


def test_call_rejects_bad_rows_and_variants():
    rows = copy.deepcopy(RTE_ROWS)
    del rows[1]["sentence2"]
    with pytest.raises(BortzooError, match="sentence2"):
        TokenEdit()(rows, FIELDS, variants=1, seed=0)
    rows = copy.deepcopy(RTE_ROWS)
    rows[2]["sentence1"] = None
    with pytest.raises(BortzooError, match="sentence1"):
        TokenEdit()(rows, FIELDS, variants=1, seed=0)
    with pytest.raises(BortzooError, match="variants"):
        TokenEdit()(RTE_ROWS, FIELDS, variants=0, seed=0)
    assert TokenEdit()([], FIELDS, variants=2, seed=0) == []


def test_call_rejects_a_rewrite_of_the_wrong_length():
    class Short(Transform):
        def rewrite(self, texts, seed):
            return texts[:-1]

    with pytest.raises(BortzooError, match="Short"):
        Short()(RTE_ROWS, FIELDS, variants=1, seed=0)
    # the base class is the contract, not a transformation: using it as one says what a subclass must add
    with pytest.raises(NotImplementedError, match=r"Transform must implement rewrite\(\) or override __call__"):
        Transform()(RTE_ROWS, FIELDS, variants=1, seed=0)


# --- MaskedLMReplace ------------------------------------------------------------------------------------------


def test_masked_lm_construction_is_cheap(monkeypatch):
    def offline(*args, **kwargs):
        raise AssertionError("the model must not load when the transform is built")

    monkeypatch.setattr("bortzoo.hub.load_masked_lm", offline)
    monkeypatch.setattr("bortzoo.hub.load_tokenizer", offline)
    mlm = MaskedLMReplace()
    assert mlm.model == "FacebookAI/roberta-large" and mlm._model is None and mlm._tokenizer is None
    with pytest.raises(AssertionError, match="must not load"):
        mlm.rewrite(["the capital of italy is rome."], 0)


def test_masked_lm_rewrites_with_the_tiny_model(tiny_mlm, monkeypatch):
    from bortzoo import hub

    loads = []
    real = hub.load_masked_lm
    monkeypatch.setattr(hub, "load_masked_lm", lambda *a, **k: loads.append(a) or real(*a, **k))
    mlm = MaskedLMReplace(tiny_mlm, rate=0.3, batch_size=2, max_length=60)
    texts = ["the green dog carries a bright library after the rain.", "the capital of italy is rome.", "",
             "the quick teacher finds a distant child at night.", "the heavy teacher carries a clever fox."]
    out = mlm.rewrite(texts, 0)
    assert len(out) == len(texts) and all(isinstance(t, str) for t in out)
    assert mlm.rewrite(texts, 0) == out  # reproducible
    assert mlm.rewrite(texts, 1) != out
    assert len(loads) == 1 and not mlm._model.training
    assert out[2] == ""  # nothing to mask
    tok = mlm._tokenizer
    for src, new in zip(texts, out):
        if src:
            assert new != src
            n_src, n_new = len(tok.tokenize(src)), len(tok.tokenize(new))
            assert 0.5 * n_src <= n_new <= 1.5 * n_src


def test_masked_lm_results_do_not_depend_on_batch_size(tiny_mlm):
    texts = ["the green dog carries a bright library after the rain.", "the capital of italy is rome.",
             "the quick teacher finds a distant child at night.", "the heavy teacher carries a clever fox."]
    one = MaskedLMReplace(tiny_mlm, rate=0.3, batch_size=1, max_length=60).rewrite(texts, 2)
    assert MaskedLMReplace(tiny_mlm, rate=0.3, batch_size=3, max_length=60).rewrite(texts, 2) == one


def test_masked_lm_never_keeps_the_original_or_picks_a_special_token(tiny_mlm):
    import torch

    mlm = MaskedLMReplace(tiny_mlm, rate=1.0, top_k=1, max_length=60)
    model, tok = mlm._load()
    the = tok.convert_tokens_to_ids("Ġthe")
    with torch.no_grad():  # the model's favourites: every special token, then the original token
        bias = model.get_output_embeddings().bias
        bias[tok.all_special_ids] += 200.0
        bias[the] += 100.0
    text = " the" * 8
    assert tok.tokenize(text) == ["Ġthe"] * 8
    decoded = []
    real_decode = tok.decode
    tok.decode = lambda ids, **kwargs: decoded.append(list(ids)) or real_decode(ids, **kwargs)
    out = mlm.rewrite([text], 0)[0]
    (ids,) = decoded  # the ids the rewrite chose: the text's special tokens kept, every word token replaced
    words = [i for i in ids if i not in tok.all_special_ids]
    assert len(ids) == 10 and len(words) == 8 and the not in words
    assert out.strip()


def test_masked_lm_through_call_keeps_rows(tiny_mlm):
    out = MaskedLMReplace(tiny_mlm, rate=0.3, max_length=60, device="cpu")(RTE_ROWS, FIELDS, variants=2, seed=0)
    for src, variants in zip(RTE_ROWS, out):
        assert len(variants) == 2 and variants[0] != variants[1]
        for new in variants:
            assert (new["label"], new["idx"]) == (src["label"], src["idx"])
            assert all(new[f] != src[f] for f in FIELDS)


def test_masked_lm_rejects_bort_and_bad_arguments():
    with pytest.raises(BortzooError, match="FacebookAI/roberta-large") as err:
        MaskedLMReplace("amazon/bort")
    assert "bortzoo export" in str(err.value)
    for kwargs, arg in (({"rate": 0}, "rate"), ({"rate": 1.5}, "rate"), ({"top_k": 0}, "top_k"),
                        ({"batch_size": 0}, "batch_size")):
        with pytest.raises(BortzooError, match=arg):
            MaskedLMReplace(**kwargs)


def test_masked_lm_needs_a_mask_token(tiny_mlm, monkeypatch):
    from bortzoo import hub

    real = hub.load_tokenizer

    def no_mask(*args, **kwargs):
        tok = real(*args, **kwargs)
        tok.mask_token = None
        return tok

    monkeypatch.setattr(hub, "load_tokenizer", no_mask)
    with pytest.raises(BortzooError, match="mask token"):
        MaskedLMReplace(tiny_mlm).rewrite(["the capital of italy is rome."], 0)


# --- lookup ---------------------------------------------------------------------------------------------------


def test_get_transform():
    assert isinstance(get_transform("token_edit"), TokenEdit)
    mlm = get_transform("masked_lm")
    assert isinstance(mlm, MaskedLMReplace) and mlm._model is None
    upper = Upper()
    assert get_transform(upper) is upper
    with pytest.raises(BortzooError, match="token_edit, masked_lm"):
        get_transform("synonyms")
    assert set(TRANSFORMS) == {"token_edit", "masked_lm"} and tr.TokenEdit.name == "token_edit"


def test_user_subclass_works_through_call():
    out = Upper()(RTE_ROWS, ("sentence1",), variants=1, seed=0)
    assert [v[0]["sentence1"] for v in out] == [r["sentence1"].upper() for r in RTE_ROWS]
    assert [v[0]["sentence2"] for v in out] == [r["sentence2"] for r in RTE_ROWS]
