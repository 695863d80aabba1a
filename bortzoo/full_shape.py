"""Full-shape smoke runs: a GPU recipe run for 2 steps at its real shapes on CPU, offline.

A GPU recipe's first failure (a wrong shape at 512 tokens, an fp16 checkpoint, a checkpoint too big to save)
should show on a laptop, not an hour into a paid run. So each kind of GPU recipe runs here through the same
CLI, at its real model shapes and sequence lengths, with random weights in the real checkpoints' layouts
(`STAND_INS`, written into a Hugging Face cache so the recipe's Hub ids resolve unchanged), and with the
recipe's own settings except these (the documented override, `OVERRIDES`):

- device and precision: CPU, one process, fp32 (`strategy: auto`);
- batch: 2 rows (1 for RACE with BERT-large), training 2 steps, validating 1 batch;
- data: offline copies (the tiny fixtures with texts lengthened past the recipe's max_length; the tiny
  corpus for pretraining), since the real datasets need the network.

`run(kind)` runs one in a subprocess and returns its wall time and peak memory beside `bortzoo plan`'s
estimate for the same shapes. `bench/full_shape.py` runs all of them; tests run a selection.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bortzoo.arch import get_arch
from bortzoo.errors import BortzooError
from bortzoo.files import write_text
from bortzoo.resources import ASSETS, resolve_recipe


# -- the stand-ins: random weights, real layouts --------------------------------------------------------
@dataclass(frozen=True)
class StandIn:
    """What a real checkpoint's folder holds: model family and class, shape, stored dtype, weight file."""

    hub_id: str
    arch: str  # a preset of bortzoo.arch
    family: str  # "roberta" (RobertaForMaskedLM, BPE vocab.json); "bert" (Google's BertForPreTraining weights: pooler
    #              and next-sentence head included, WordPiece vocab.txt); "bort" (BertForMaskedLM weights with a RoBERTa
    #              BPE vocabulary, as amazon/bort)
    dtype: str = "float32"
    weights: str = "model.safetensors"  # or "pytorch_model.bin" (a PyTorch pickle, as older repos have)


STAND_INS = {s.hub_id: s for s in (
    StandIn("FacebookAI/roberta-large", "roberta-large", "roberta"),
    StandIn("google-bert/bert-large-uncased", "bert-large", "bert"),
    # transformers' conversion of the MXNet release: every weight .half(), the head never converted (BORT_FACTS)
    StandIn("amazon/bort", "bort", "bort", dtype="float16"),
)}
BERT_SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}  # bert-base/large-uncased ids


def _words() -> list[str]:
    import re

    text = (ASSETS / "tiny-corpus.txt").read_text(encoding="utf-8").lower()
    return sorted(set(re.findall(r"[a-z]+", text)))


def write_roberta_vocab(folder: Path, vocab_size: int) -> None:
    """The tiny byte-level BPE vocabulary grown to `vocab_size` with unreachable fillers, `<mask>` last (RoBERTa's
    layout: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> vocab_size - 1)."""
    tiny = json.loads((ASSETS / "tiny-tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    ordered = [token for token, _ in sorted(tiny.items(), key=lambda item: item[1]) if token != "<mask>"]
    ordered += [f"<filler{i}>" for i in range(vocab_size - 1 - len(ordered))] + ["<mask>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(ordered)}), encoding="utf-8")
    shutil.copy(ASSETS / "tiny-tokenizer" / "merges.txt", folder / "merges.txt")


def write_wordpiece_vocab(folder: Path, vocab_size: int) -> None:
    """An uncased WordPiece vocab.txt with BERT's special ids, the tiny corpus's words and characters, fillers."""
    import string

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = list(dict.fromkeys(chars + [f"##{c}" for c in string.ascii_lowercase + string.digits] + _words()))
    tokens: list[str] = []
    for i in range(vocab_size):
        if i in BERT_SPECIALS:
            tokens.append(BERT_SPECIALS[i])
        elif i > max(BERT_SPECIALS) and words:
            tokens.append(words.pop(0))
        else:
            tokens.append(f"[unused{i}]")
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}),
                                                  encoding="utf-8")


def write_stand_in(folder: str | os.PathLike, stand_in: StandIn, seed: int = 0) -> Path:
    """Random weights of `stand_in`'s shape in its real folder layout (config, tokenizer files, weight file).

    A teacher's masked-LM head gets random LayerNorm and bias values, as any trained head has; amazon/bort's stays
    at its initial values with its one token-type embedding zeroed, as the conversion left them
    (`bortzoo.hub.untrained_mlm_head` recognises that)."""
    import torch
    from transformers import BertForMaskedLM, BertForPreTraining, RobertaConfig, RobertaForMaskedLM

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    arch = get_arch(stand_in.arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if stand_in.family == "roberta":
            bert = arch.to_bert_config().to_dict()
            bert.update(bos_token_id=0, eos_token_id=2)
            model = RobertaForMaskedLM(RobertaConfig(**{k: v for k, v in bert.items()
                                                        if k not in ("model_type", "architectures")}))
        elif stand_in.family == "bert":
            model = BertForPreTraining(arch.to_bert_config())
        else:
            model = BertForMaskedLM(arch.to_bert_config())
        with torch.no_grad():
            if stand_in.family == "bort":
                model.bert.embeddings.token_type_embeddings.weight.zero_()
            else:
                head = model.lm_head if stand_in.family == "roberta" else model.cls.predictions
                norm = head.layer_norm if stand_in.family == "roberta" else head.transform.LayerNorm
                for tensor in (norm.weight, norm.bias, head.bias):
                    tensor.add_(torch.randn_like(tensor) * 0.02)
    model = model.to(getattr(torch, stand_in.dtype))
    if stand_in.weights == "model.safetensors":
        model.save_pretrained(out)
    else:
        model.config.save_pretrained(out)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    config = json.loads((out / "config.json").read_text())
    config["architectures"] = ["RobertaForMaskedLM" if stand_in.family == "roberta" else "BertForMaskedLM"]
    if stand_in.family == "bort":
        config["tokenizer_class"] = "RobertaTokenizer"
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if stand_in.family == "bert":
        write_wordpiece_vocab(out, arch.vocab_size)
    else:
        write_roberta_vocab(out, arch.vocab_size)
    return out


def commit_of(hub_id: str) -> str:
    """A fixed 40-hex commit id per stand-in, as a download would record one."""
    return hashlib.sha1(f"bortzoo stand-in of {hub_id}".encode()).hexdigest()


def add_to_hub_cache(cache: str | os.PathLike, hub_id: str, folder: str | os.PathLike, move: bool = False) -> Path:
    """`folder`'s files as a download of `hub_id` leaves them in a Hugging Face cache (`HF_HUB_CACHE`): blobs
    named by their sha256, `snapshots/<commit>/` of relative symlinks, `refs/main` naming the commit.
    Returns the snapshot folder."""
    repo = Path(cache) / f"models--{hub_id.replace('/', '--')}"
    commit = commit_of(hub_id)
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(Path(folder).iterdir()):
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
        blob = repo / "blobs" / digest.hexdigest()
        if not blob.exists():
            (shutil.move if move else shutil.copyfile)(file, blob)
        link = snapshot / file.name
        link.unlink(missing_ok=True)
        try:
            os.symlink(os.path.relpath(blob, snapshot), link)
        except OSError:  # no symlinks here: huggingface_hub copies on such systems too
            shutil.copyfile(blob, link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # no newline, as huggingface_hub writes it
    return snapshot


def stand_in_hub_cache(cache: str | os.PathLike, hub_ids: Optional[list[str]] = None) -> Path:
    """A Hugging Face cache holding the stand-ins of `hub_ids` (default all); ones already there are kept."""
    cache = Path(cache)
    for hub_id in hub_ids or list(STAND_INS):
        if hub_id not in STAND_INS:
            raise BortzooError(f"no stand-in for {hub_id!r}; known: {', '.join(STAND_INS)}")
        repo = cache / f"models--{hub_id.replace('/', '--')}"
        if (repo / "refs" / "main").exists():
            continue
        staging = cache / ".staging" / hub_id.replace("/", "--")
        shutil.rmtree(staging, ignore_errors=True)
        write_stand_in(staging, STAND_INS[hub_id])
        add_to_hub_cache(cache, hub_id, staging, move=True)  # refs/main last: a half-written repo is redone
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(cache / ".staging", ignore_errors=True)
    return cache


# -- the data: the tiny fixtures, texts lengthened ------------------------------------------------------
LONG_COLUMNS = ("sentence1", "premise", "passage", "article")  # the long text of a row, per benchmark schema


def long_task_copies(out: str | os.PathLike, words: int = 700, seed: int = 0) -> Path:
    """The tiny task fixtures (`bortzoo/assets/tiny-tasks`) with each row's long text (`LONG_COLUMNS`) grown to
    at least `words` words from the tiny corpus, so that every sequence reaches the recipe's max_length and is
    truncated as real rows are. Text is appended, so ReCoRD's entity offsets stay true."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bortzoo.data.tiny_corpus import paragraphs

    out = Path(out)
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ASSETS / "tiny-tasks", out)
    filler = " ".join(paragraphs(200, seed=seed)).split()
    for path in sorted(out.rglob("*.parquet")):
        table = pq.read_table(path)
        for name in LONG_COLUMNS:
            if name not in table.column_names:
                continue
            texts = table.column(name).to_pylist()
            grown = [f"{text} {' '.join(filler[(i * 37) % 1000:(i * 37) % 1000 + words])}" for i, text in
                     enumerate(texts)]
            table = table.set_column(table.column_names.index(name), name,
                                     pa.array(grown, type=table.schema.field(name).type))
        pq.write_table(table, path)
    (out / ".complete").write_text("")
    return out


# -- the runs ---------------------------------------------------------------------------------------------
CPU_TRAINER = {  # device and precision: one CPU process in fp32; 2 training steps and 1 validation batch
    "trainer.accelerator": "cpu", "trainer.devices": 1, "trainer.num_nodes": 1, "trainer.strategy": "auto",
    "trainer.precision": "32-true", "trainer.max_steps": 2, "trainer.limit_train_batches": 2,
    "trainer.limit_val_batches": 1, "trainer.num_sanity_val_steps": 0,
}
CORPUS = {"sources": [{"path": str(ASSETS / "tiny-corpus.txt")}], "val_fraction": 0.1, "num_proc": 1}


@dataclass(frozen=True)
class Kind:
    """One kind of GPU recipe and the override that makes its smoke run (dotted keys into the recipe)."""

    name: str
    verb: str  # the bortzoo verb: fit, extract or agora
    recipe: str  # a packaged recipe
    overrides: dict = field(default_factory=dict)
    what: str = ""


def _finetune(batch: int = 2, **extra: Any) -> dict:
    return {**CPU_TRAINER, "data.init_args.batch_size": batch, "data.init_args.eval_batch_size": batch, **extra}


KINDS = {k.name: k for k in (
    Kind("pretrain", "fit", "pretrain/bort", {
        **CPU_TRAINER, "trainer.val_check_interval": 2,
        **{f"data.init_args.{key}": value for key, value in CORPUS.items()}, "data.init_args.batch_size": 2},
        "Bort distilled from RoBERTa-large, sequences of 512"),
    Kind("extract", "extract", "extract/bort", {
        "accelerator": "cpu", "precision": "32-true", "space.depths": [12], "space.heads": [16],
        "space.hidden": [1024], "space.intermediate": [3072], "min_steps": 2, "max_steps": 2, "train_batches": 2,
        "eval_batches": 1, "hparams": [{"lr": 1.0e-4, "warmup_ratio": 0.01}], "data.batch_size": 2,
        **{f"data.{key}": value for key, value in CORPUS.items() if key != "num_proc"}},
        "the largest candidate <12,16,1024,3072> distilled from RoBERTa-large, sequences of 128"),
    Kind("bort-rte", "fit", "finetune/glue/rte-bort", _finetune(), "Bort (amazon/bort, fp16) on RTE, 128 tokens"),
    Kind("bert-large-rte", "fit", "finetune/glue/rte-bert-large", _finetune(), "BERT-large on RTE, 128 tokens"),
    Kind("bort-race", "fit", "finetune/race/race-all-bort", _finetune(), "Bort on RACE, 4 options x 512 tokens"),
    Kind("bert-large-race", "fit", "finetune/race/race-all-bert-large", _finetune(batch=1),
         "BERT-large on RACE, 4 options x 512 tokens"),
    Kind("bort-record", "fit", "finetune/superglue/record-bort", _finetune(),
         "Bort on ReCoRD, every candidate entity x 384 tokens"),
    Kind("agora", "agora", "agora/rte-bort", {
        "finetune_overrides": _finetune(), "weak_overrides": _finetune(), "grid": None, "sample": None,
        "sets": [{"seed": 0, "lr": 1.0e-5, "weight_decay": 0.0, "warmup_ratio": 0.35, "batch_size": 2},
                 {"seed": 1, "lr": 1.0e-4, "weight_decay": 0.0, "warmup_ratio": 0.35, "batch_size": 2}],
        "max_iterations": 2, "max_new": 4},
        "two Agora iterations on RTE: the BERT-large weak model fitted, three Bort trials, the first best's "
        "mistakes rewritten by RoBERTa-large's masked LM and labelled by the weak model"),
)}


def _task_data_dir(config: dict, tasks_root: Path) -> Optional[str]:
    """The offline copy of a fine-tune recipe's benchmark (its task's Hub dataset, as the tiny fixtures lay it)."""
    from bortzoo.data.tiny_tasks import FOLDERS
    from bortzoo.tasks import get_task

    task = ((config.get("data") or {}).get("init_args") or {}).get("task")
    return str(tasks_root / FOLDERS[get_task(task).dataset]) if task else None


def smoke_recipe(kind: Kind, tasks_root: Path) -> dict:
    """`kind`'s recipe with its override applied (and the offline data folders filled in)."""
    import yaml

    from bortzoo.recipe import apply_overrides

    where = f"the full-shape override of {kind.recipe}"
    config = yaml.safe_load(Path(resolve_recipe(kind.recipe)).read_text(encoding="utf-8"))
    config = apply_overrides(config, copy.deepcopy(kind.overrides), where)
    if kind.verb == "fit" and _task_data_dir(config, tasks_root):
        config = apply_overrides(config, {"data.init_args.data_dir": _task_data_dir(config, tasks_root)}, where)
    if kind.verb == "agora":
        for recipe_key, overrides_key in (("finetune", "finetune_overrides"), ("weak_model", "weak_overrides")):
            base = yaml.safe_load(Path(resolve_recipe(config[recipe_key])).read_text(encoding="utf-8"))
            config[overrides_key]["data.init_args.data_dir"] = _task_data_dir(base, tasks_root)
    return config


def plan_of(kind: Kind, config: dict) -> dict:
    """`bortzoo plan`'s estimate at the smoke run's shapes (for the search: the larger of the teacher filling its
    cache and the candidate training; for Agora: the largest of the weak model and the trials)."""
    from bortzoo import plan

    if kind.verb == "fit":
        return plan.estimate(plan.workload_of(config, kind.recipe, kind.recipe))
    return (plan.plan_search if kind.verb == "extract" else plan.plan_agora)(config, kind.recipe)


@dataclass
class SmokeRun:
    kind: str
    recipe: str
    ok: bool
    seconds: float
    peak_rss: int  # bytes, the run's process
    plan_bytes: int  # bortzoo plan's memory per device at the same shapes
    error: str = ""

    def row(self) -> dict:
        return {"kind": self.kind, "recipe": self.recipe, "status": "ok" if self.ok else "FAILED",
                "seconds": round(self.seconds, 1), "peak_rss_gib": round(self.peak_rss / 2**30, 2),
                "plan_gib": round(self.plan_bytes / 2**30, 2),
                "rss_over_plan": round(self.peak_rss / self.plan_bytes, 2) if self.plan_bytes else None,
                "error": self.error}


def run(name: str, workdir: str | os.PathLike, cache: str | os.PathLike, timeout: float = 1800,
        plan: bool = True) -> SmokeRun:
    """Run kind `name`'s smoke run in `workdir` (its runs/ go there, replacing an earlier smoke run's), the
    stand-ins from the Hub cache `cache` (built there first if missing)."""
    import yaml

    if name not in KINDS:
        raise BortzooError(f"unknown full-shape kind {name!r}; known: {', '.join(KINDS)}")
    kind, workdir = KINDS[name], Path(workdir)
    shutil.rmtree(workdir / "runs", ignore_errors=True)  # a scratch folder: an earlier smoke run's outputs would be resumed
    workdir.mkdir(parents=True, exist_ok=True)
    stand_in_hub_cache(cache)
    tasks_root = long_task_copies(Path(cache).parent / "long-tasks")
    config = smoke_recipe(kind, tasks_root)
    recipe = workdir / "recipe.yaml"
    write_text(recipe, yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "HF_HUB_CACHE": str(Path(cache).resolve()), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "bortzoo.cli", kind.verb, "--config", str(recipe)]
    started = time.perf_counter()
    with open(workdir / "log.txt", "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        status, peak = wait_with_peak(process, timeout)
    seconds = time.perf_counter() - started
    error = ""
    if status is None:
        error = f"timed out after {timeout:.0f} s"
    elif status < 0:  # a signal: SIGKILL is most often the kernel's out-of-memory killer
        error = f"killed by {signal.Signals(-status).name}" + (" (out of memory?)" if -status == signal.SIGKILL else "")
    elif status != 0:
        tail = (workdir / "log.txt").read_text(errors="replace").strip().splitlines()[-1:] or [""]
        error = tail[0][-300:]
    estimate = _planned(kind.name, config) if plan else 0
    return SmokeRun(name, kind.recipe, status == 0, seconds, peak, estimate, error)


def wait_with_peak(process: subprocess.Popen, timeout: float) -> tuple[Optional[int], int]:
    """(exit status or None on timeout, peak resident bytes) of `process`.

    The peak is the kernel's high-water mark of the run's own memory (VmHWM), read while it runs. Not rusage's
    ru_maxrss: that also counts the parent's memory the child was spawned from, before its exec."""
    deadline, peak = time.monotonic() + timeout, 0
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            return None, peak
        peak = max(peak, _high_water(process.pid))
        time.sleep(0.1)
    return process.returncode, peak


def _high_water(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # exited meanwhile, or no /proc (not Linux)
        pass
    return 0


def _planned(name: str, config: dict) -> int:
    """`plan_of`'s memory per device, computed in a fresh process: its measuring forwards leave this one's memory
    as it was (runs spawned later start from it)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_plan_bytes, name, config).result()


def _plan_bytes(name: str, config: dict) -> int:
    return plan_of(KINDS[name], config)["memory_per_device_total"]
