"""Transformation functions for Agora: rewrite the text of dev-set mistakes into new training rows.

Agora turns the best model's mistakes on a dev split into extra training examples. A transform takes rows in
the exact schema of the Hub dataset (RTE: ``sentence1``, ``sentence2``, ``label``, ``idx``) and returns
rewritten copies: only the named text columns change, a sentence pair stays a pair, every other column is
copied as it is. Transforms are pluggable: a recipe names any `Transform` subclass by ``class_path``.

`MaskedLMReplace` (the default) fills masks with the teacher, RoBERTa-large, because the MLM head released
with `amazon/bort` was never converted and fills masks with junk. `TokenEdit` needs no model at all: it is
the cheap fallback.
"""

from __future__ import annotations

import copy
import hashlib
import random
from typing import Optional, Union

from bortzoo.errors import BortzooError

TEACHER = "FacebookAI/roberta-large"


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same on every run and platform (no Python hash randomisation)."""
    digest = hashlib.blake2b(":".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Transform:
    """Base class. Subclasses implement `rewrite` (texts → texts) or override `__call__` for row-level edits."""

    name: str = "transform"  # short name recorded in outputs

    def rewrite(self, texts: list[str], seed: int) -> list[str]:
        """`texts` rewritten, one output per input in the same order; deterministic for a given `seed`."""
        raise NotImplementedError(f"{type(self).__name__} must implement rewrite() or override __call__()")

    def __call__(self, rows: list[dict], fields: tuple[str, ...], variants: int, seed: int) -> list[list[dict]]:
        """For each row, `variants` new rows: copies of the row with every column in `fields` rewritten
        (other columns copied as they are). Deterministic for a given seed. Returns one list per input row,
        in input order, each of length `variants`."""
        fields = (fields,) if isinstance(fields, str) else tuple(fields)
        if isinstance(variants, bool) or not isinstance(variants, int) or variants < 1:
            raise BortzooError(f"variants must be an integer >= 1, got {variants!r}")
        if not fields:
            raise BortzooError("fields must name at least one text column to rewrite")
        for i, row in enumerate(rows):
            for field in fields:
                if field not in row:
                    raise BortzooError(f"row {i} has no field {field!r} (it has {', '.join(map(repr, row))})")
                if not isinstance(row[field], str):
                    raise BortzooError(f"field {field!r} of row {i} is {type(row[field]).__name__}, not a string")
        if not rows:
            return []
        out: list[list[dict]] = [[] for _ in rows]
        for variant in range(variants):
            copies = [copy.deepcopy(row) for row in rows]
            for f, field in enumerate(fields):
                new = list(self.rewrite([row[field] for row in rows], derive_seed(seed, variant, f)))
                if len(new) != len(rows) or not all(isinstance(t, str) for t in new):
                    raise BortzooError(f"{type(self).__name__}.rewrite must return {len(rows)} strings, "
                                       f"got {len(new)} values")
                for row, text in zip(copies, new):
                    row[field] = text
            for per_row, row in zip(out, copies):
                per_row.append(row)
        return out


class TokenEdit(Transform):
    """The cheap fallback that needs no model: word dropout and adjacent word swaps.

    Words are split on whitespace and joined with single spaces. A text is never emptied, a one-word text
    stays as it is, and a text of two or more words always changes when it can (one swap is forced).

    Args:
        drop: Probability of dropping each word, in [0, 1).
        swap: Probability of swapping each adjacent word pair (left to right; a swapped word is not swapped
            again), in [0, 1].
    """

    name = "token_edit"

    def __init__(self, drop: float = 0.1, swap: float = 0.1):
        if not 0 <= drop < 1:
            raise BortzooError(f"drop must be in [0, 1), got {drop!r}")
        if not 0 <= swap <= 1:
            raise BortzooError(f"swap must be in [0, 1], got {swap!r}")
        self.drop, self.swap = float(drop), float(swap)

    def rewrite(self, texts: list[str], seed: int) -> list[str]:
        return [self._edit(text, random.Random(derive_seed(seed, i))) for i, text in enumerate(texts)]

    def _edit(self, text: str, rng: random.Random) -> str:
        source = text.split()
        if len(source) < 2:
            return text
        words = [w for w in source if rng.random() >= self.drop] or [rng.choice(source)]
        i = 0
        while i < len(words) - 1:
            if rng.random() < self.swap:
                words[i], words[i + 1] = words[i + 1], words[i]
                i += 2
            else:
                i += 1
        if words == source:  # nothing changed: force one swap of two different words, if there are any
            pairs = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
            if pairs:
                i = rng.choice(pairs)
                words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)


class MaskedLMReplace(Transform):
    """Contextual replacement: mask a share of the tokens, let a masked LM propose replacements.

    Each masked token is replaced by a sample from the model's `top_k` most likely tokens, never the original
    token nor a special token. Texts longer than `max_length` tokens are truncated: the rewrite keeps only
    their first `max_length` tokens. The model is loaded on first use, not when the transform is built.

    Args:
        model: Hub id or local folder of a masked LM with a working MLM head: the teacher
            (FacebookAI/roberta-large) or a student exported with `bortzoo export`. Not amazon/bort.
        rate: Share of each text's tokens to replace, in (0, 1]; at least one token per text.
        top_k: Number of most likely tokens to sample each replacement from.
        batch_size: Texts per forward pass.
        max_length: Tokens kept per text, special tokens included; longer texts are truncated.
        device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1"...
        revision: Hub revision (branch, tag or commit) of `model`; None for the default branch.
    """

    name = "masked_lm"

    def __init__(self, model: str = TEACHER, rate: float = 0.15, top_k: int = 10, batch_size: int = 32,
                 max_length: int = 256, device: str = "auto", revision: Optional[str] = None):
        if str(model).strip().strip("/").lower() == "amazon/bort":
            raise BortzooError(f"model 'amazon/bort' cannot fill masks: its released MLM head was never converted "
                               f"and predicts junk. Use the teacher ({TEACHER!r}) or a pretrained bortzoo student "
                               f"exported with `bortzoo export`")
        if not 0 < rate <= 1:
            raise BortzooError(f"rate must be in (0, 1], got {rate!r}")
        for arg, value in (("top_k", top_k), ("batch_size", batch_size), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BortzooError(f"{arg} must be an integer >= 1, got {value!r}")
        self.model, self.rate, self.top_k, self.batch_size = model, float(rate), top_k, batch_size
        self.max_length, self.device, self.revision = max_length, device, revision
        self._model = self._tokenizer = None

    def _load(self):
        if self._model is None:
            import torch

            from bortzoo.hub import load_masked_lm, load_tokenizer, resolve, untrained_mlm_head

            tokenizer = load_tokenizer(self.model, self.revision)
            if untrained_mlm_head(resolve(self.model, self.revision)):
                raise BortzooError(f"model {self.model!r} cannot fill masks: its masked-LM head still holds its initial "
                                   f"values (a copy of amazon/bort, or never trained). Use the teacher ({TEACHER!r}) "
                                   "or a pretrained bortzoo student exported with `bortzoo export`")
            if tokenizer.mask_token_id is None:
                raise BortzooError(f"the tokenizer of {self.model!r} has no mask token: it is not a masked LM")
            device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
            model = load_masked_lm(self.model, self.revision, dtype=torch.float32).to(device).eval().requires_grad_(False)
            self._tokenizer, self._model = tokenizer, model
        return self._model, self._tokenizer

    def rewrite(self, texts: list[str], seed: int) -> list[str]:
        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            out += self._rewrite_chunk(texts[start:start + self.batch_size], seed, start)
        return out

    def _rewrite_chunk(self, texts: list[str], seed: int, offset: int) -> list[str]:
        import torch

        model, tok = self._load()
        enc = tok(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt",
                  return_special_tokens_mask=True)
        candidates = (enc.pop("special_tokens_mask") == 0) & (enc["attention_mask"] == 1)
        ids = enc["input_ids"]
        masked = ids.clone()
        generators, positions = [], []
        for b in range(len(texts)):  # one generator per text: results do not depend on the chunking
            g = torch.Generator().manual_seed(derive_seed(seed, offset + b))
            cand = candidates[b].nonzero().flatten()
            k = max(1, round(self.rate * len(cand))) if len(cand) else 0
            pos = cand[torch.randperm(len(cand), generator=g)[:k]].sort().values
            masked[b, pos] = tok.mask_token_id
            generators.append(g)
            positions.append(pos)
        enc["input_ids"] = masked
        with torch.inference_mode():
            logits = model(**{key: t.to(model.device) for key, t in enc.items()}).logits
        vocab = min(logits.shape[-1], len(tok))  # never sample ids the tokenizer cannot decode
        banned = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)
        out = []
        for b, (text, pos, g) in enumerate(zip(texts, positions, generators)):
            if not len(pos):
                out.append(text)
                continue
            scores = logits[b, pos.to(logits.device), :vocab].float().cpu()
            scores[:, banned[banned < vocab]] = float("-inf")
            scores.scatter_(1, ids[b, pos].unsqueeze(1), float("-inf"))
            top = scores.topk(max(1, min(self.top_k, vocab - len(banned) - 1)), dim=-1)
            pick = torch.multinomial(top.values.softmax(-1), 1, generator=g).squeeze(1)
            new_ids = ids[b].clone()
            new_ids[pos] = top.indices.gather(1, pick.unsqueeze(1)).squeeze(1)
            new_ids = new_ids[enc["attention_mask"][b] == 1]
            out.append(tok.decode(new_ids, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip())
        return out


TRANSFORMS = {"token_edit": TokenEdit, "masked_lm": MaskedLMReplace}


def get_transform(value: Union[Transform, str]) -> Transform:
    """`value` itself if it is a `Transform`, else the transform of that name in `TRANSFORMS`, with defaults."""
    if isinstance(value, Transform):
        return value
    if isinstance(value, str) and value in TRANSFORMS:
        return TRANSFORMS[value]()
    raise BortzooError(f"unknown transform {value!r}: use one of {', '.join(TRANSFORMS)} or a Transform instance")
