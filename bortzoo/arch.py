"""The BERT architecture family ⟨D, A, H, I⟩: exact sizes, FLOPs, the search space and presets.

Pure Python on purpose: counting the 300 candidates of the search must not need torch.
Every count here equals ``sum(p.numel())`` of the transformers model that `to_bert_config`
builds (tests check all 300 candidates and every preset).
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Union

from bortzoo.errors import BortzooError

ROBERTA_VOCAB = 50_265
BERT_VOCAB = 30_522

# The search space of the papers (arXiv 2010.10499 and 2010.08512).
SEARCH_DEPTHS = (2, 4, 6, 8, 10, 12)
SEARCH_HEADS = (4, 8, 12, 16)
SEARCH_HIDDEN = (512, 768, 1024)
SEARCH_INTERMEDIATE = (256, 512, 768, 1024, 3072)


@dataclass(frozen=True)
class Arch:
    """A post-LayerNorm BERT encoder: depth D, attention heads A, hidden H, intermediate I.

    The remaining fields default to the released Bort (RoBERTa vocabulary, one token type,
    pad id 1, eps 1e-5, positions from 0); the BERT presets override them.
    """

    depth: int
    heads: int
    hidden: int
    intermediate: int
    vocab_size: int = ROBERTA_VOCAB
    max_positions: int = 512
    type_vocab_size: int = 1
    pad_token_id: int = 1
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("depth", "heads", "hidden", "intermediate", "vocab_size", "max_positions", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BortzooError(f"Arch.{name} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            divisors = [a for a in range(1, min(self.hidden, 64) + 1) if self.hidden % a == 0]
            raise BortzooError(
                f"Arch {self.short()}: hidden size H={self.hidden} is not divisible by the number of "
                f"attention heads A={self.heads}; valid A for H={self.hidden} include {divisors}"
            )
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise BortzooError(f"Arch.pad_token_id={self.pad_token_id} is outside the vocabulary (size {self.vocab_size})")

    # -- naming -----------------------------------------------------------------------------
    def short(self) -> str:
        """The paper's notation, e.g. ⟨4,8,1024,768⟩ (ASCII so it survives any terminal)."""
        return f"<{self.depth},{self.heads},{self.hidden},{self.intermediate}>"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- parameter counts (exact) -------------------------------------------------------------
    @property
    def embedding_params(self) -> int:
        """Word + position + token-type embeddings and their LayerNorm."""
        return (self.vocab_size + self.max_positions + self.type_vocab_size) * self.hidden + 2 * self.hidden

    @property
    def layer_params(self) -> int:
        """One encoder layer: Q, K, V, output projection, two LayerNorms, the feed-forward pair."""
        h, i = self.hidden, self.intermediate
        attention = 4 * (h * h + h) + 2 * h
        feed_forward = (h * i + i) + (i * h + h) + 2 * h
        return attention + feed_forward

    @property
    def encoder_params(self) -> int:
        return self.depth * self.layer_params

    @property
    def mlm_head_params(self) -> int:
        """Transform (dense + LayerNorm) and output bias; the decoder matrix is tied to the embeddings."""
        h = self.hidden
        return (h * h + h) + 2 * h + self.vocab_size

    @property
    def pooler_params(self) -> int:
        """BERT's pooler (dense + tanh on the first token); Bort has none."""
        return self.hidden * self.hidden + self.hidden

    def total_params(self, mlm_head: bool = True, pooler: bool = False) -> int:
        """All parameters of the encoder, with the masked-LM head and/or pooler if asked."""
        total = self.embedding_params + self.encoder_params
        if mlm_head:
            total += self.mlm_head_params
        if pooler:
            total += self.pooler_params
        return total

    # -- compute ------------------------------------------------------------------------------
    def encoder_flops(self, seq_len: int = 128, batch: int = 1) -> int:
        """Matmul FLOPs (2 per multiply-add) of the encoder layers for `batch` sequences of `seq_len`.

        Per layer: Q, K, V and output projections 8·L·H², feed-forward 4·L·H·I, attention scores
        and weighted sum 4·L²·H. Embedding lookups, softmax, LayerNorm and GELU are not matmuls.
        """
        if seq_len < 1 or batch < 1:
            raise BortzooError(f"seq_len and batch must be positive, got seq_len={seq_len}, batch={batch}")
        length, h, i = seq_len, self.hidden, self.intermediate
        per_layer = 8 * length * h * h + 4 * length * h * i + 4 * length * length * h
        return batch * self.depth * per_layer

    def mlm_head_flops(self, seq_len: int = 128, batch: int = 1) -> int:
        """Matmul FLOPs of the masked-LM head over every position (transform + vocabulary projection)."""
        return batch * (2 * seq_len * self.hidden * self.hidden + 2 * seq_len * self.hidden * self.vocab_size)

    # -- transformers -------------------------------------------------------------------------
    def to_bert_config(self, **overrides: Any):
        """A transformers `BertConfig` of this shape (GELU, post-LN, absolute positions from 0)."""
        from transformers import BertConfig

        kwargs: dict[str, Any] = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden,
            num_hidden_layers=self.depth,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            max_position_embeddings=self.max_positions,
            type_vocab_size=self.type_vocab_size,
            initializer_range=0.02,
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_token_id,
        )
        kwargs.update(overrides)
        return BertConfig(**kwargs)

    @classmethod
    def from_config(cls, config: Any) -> "Arch":
        """The `Arch` of a transformers BERT/RoBERTa config (or its dict form)."""
        get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
        try:
            return cls(
                depth=get("num_hidden_layers"),
                heads=get("num_attention_heads"),
                hidden=get("hidden_size"),
                intermediate=get("intermediate_size"),
                vocab_size=get("vocab_size"),
                max_positions=get("max_position_embeddings", 512),
                type_vocab_size=get("type_vocab_size", 2),
                pad_token_id=get("pad_token_id", 0) if get("pad_token_id", 0) is not None else 0,
                layer_norm_eps=get("layer_norm_eps", 1e-12),
            )
        except TypeError as err:  # a missing key arrives as None
            raise BortzooError(f"not a BERT-style config (needs num_hidden_layers, num_attention_heads, "
                               f"hidden_size, intermediate_size, vocab_size): {err}") from None

    def replace(self, **changes: Any) -> "Arch":
        data = self.as_dict()
        unknown = set(changes) - set(data)
        if unknown:
            raise BortzooError(f"unknown Arch field(s) {sorted(unknown)}; valid: {sorted(data)}")
        data.update(changes)
        return Arch(**data)


PRESETS: dict[str, Arch] = {
    # As released (hidden 1024, intermediate 768): the paper's ⟨4,8,768,1024⟩ is a typo (alexa/bort#3).
    "bort": Arch(4, 8, 1024, 768),
    "bert-large": Arch(24, 16, 1024, 4096, vocab_size=BERT_VOCAB, type_vocab_size=2, pad_token_id=0, layer_norm_eps=1e-12),
    "bert-base": Arch(12, 12, 768, 3072, vocab_size=BERT_VOCAB, type_vocab_size=2, pad_token_id=0, layer_norm_eps=1e-12),
    # RoBERTa keeps 514 position rows (its positions start after the pad id); counted as stored.
    "roberta-large": Arch(24, 16, 1024, 4096, max_positions=514),
}

_TUPLE = re.compile(r"^\s*[<(\[⟨]?\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*[>)\]⟩]?\s*$")


def get_arch(spec: Union[str, Arch, dict]) -> Arch:
    """An `Arch` from a preset name, a "D,A,H,I" string (RoBERTa vocabulary), a dict, or an `Arch`."""
    if isinstance(spec, Arch):
        return spec
    if isinstance(spec, dict):
        valid = {f.name for f in fields(Arch)}
        unknown = set(spec) - valid
        if unknown:
            raise BortzooError(f"unknown Arch field(s) {sorted(unknown)}; valid: {sorted(valid)}")
        try:
            return Arch(**spec)
        except TypeError as err:
            raise BortzooError(f"incomplete Arch {spec}: {err}") from None
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in PRESETS:
            return PRESETS[key]
        match = _TUPLE.match(key)
        if match:
            return Arch(*(int(g) for g in match.groups()))
        close = difflib.get_close_matches(key, PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BortzooError(
            f"unknown architecture {spec!r}.{hint} Use a preset ({', '.join(PRESETS)}) "
            f"or 'D,A,H,I' such as '4,8,1024,768'"
        )
    raise BortzooError(f"cannot read an architecture from {type(spec).__name__} {spec!r}")


def search_space(
    depths: Iterable[int] = SEARCH_DEPTHS,
    heads: Iterable[int] = SEARCH_HEADS,
    hidden: Iterable[int] = SEARCH_HIDDEN,
    intermediate: Iterable[int] = SEARCH_INTERMEDIATE,
    vocab_size: int = ROBERTA_VOCAB,
    max_positions: int = 512,
) -> list[Arch]:
    """Every ⟨D,A,H,I⟩ of the grid whose H is divisible by A (the papers' grid gives 300)."""
    space = [
        Arch(d, a, h, i, vocab_size=vocab_size, max_positions=max_positions)
        for d, a, h, i in itertools.product(depths, heads, hidden, intermediate)
        if h % a == 0
    ]
    if not space:
        raise BortzooError("the search space is empty: no hidden size in it is divisible by any head count")
    return space
