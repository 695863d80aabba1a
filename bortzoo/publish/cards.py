"""Model cards: Hub metadata and a body rendered from `model_cards/<kind>.md` (packaged: `bortzoo.resources`),
from what the run produced.

Every number in a card comes from the run folder (results.json, seeds.json, the search tables, the
metrics the pretraining logged), from `Arch` (exact sizes), from a `bortzoo bench` results file (CPU
latency, with the hardware it ran on), or from `bortzoo.tasks.reported` under a "reported by the authors"
label. The `model-index` metadata carries the run's own dev results so the Hub (and `ModelCard.load`)
can read them back.

No path of the machine the card is built on appears in it: every model, tokenizer, dataset or corpus the run
read is named through `public_ref`, as itself when it is a Hub id and in neutral words when it is local.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError
from bortzoo.hub import is_hub_id
from bortzoo.publish.run_folder import Run
from bortzoo.resources import PROJECT_ROOT, card_template
from bortzoo.tasks import get_task
from bortzoo.tasks.reported import KNOWN_LOSSES, SOURCE, reported
from bortzoo.tasks.spec import MULTI_OPTION

LICENSE = "apache-2.0"  # Bort's code and weights (alexa/bort) and this project
# Our metric names → the Hub's metric ids (model-index `type`).
# Our metric names -> the model-index metric types of the cards (one type per name: the demo reads them back).
HUB_METRICS = {"accuracy": "accuracy", "f1": "f1", "mcc": "matthews_correlation", "pearson": "pearsonr",
               "spearman": "spearmanr", "loss": "loss", "macro_f1": "f1_macro", "f1a": "f1a",
               "em": "exact_match", "parity": "gender_parity"}
PAPERS = [
    ("dewynter2020bort", "Optimal Subarchitecture Extraction For BERT", "Adrian de Wynter and Daniel J. Perry",
     "2010.10499"),
    ("dewynter2020fptas", "An Approximation Algorithm for Optimal Subarchitecture Extraction", "Adrian de Wynter",
     "2010.08512"),
    ("dewynter2020agora", "An Algorithm for Learning Smaller Representations of Models With Scarce Data",
     "Adrian de Wynter", "2010.07990"),
]


def citations() -> str:
    entries = [f"@misc{{{key},\n  title = {{{title}}},\n  author = {{{authors}}},\n  year = {{2020}},\n"
               f"  eprint = {{{arxiv}}},\n  archivePrefix = {{arXiv}},\n  primaryClass = {{cs.LG}}\n}}"
               for key, title, authors, arxiv in PAPERS]
    return "```bibtex\n" + "\n\n".join(entries) + "\n```"


# -- tables --------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def arch_table(arch: Arch, seq_len: int = 128) -> str:
    """Exact sizes of this shape, counted by `Arch` (the Hub's file size would include the head)."""
    seq_len = min(seq_len, arch.max_positions)
    rows = [["depth D", arch.depth], ["attention heads A", arch.heads], ["hidden size H", arch.hidden],
            ["intermediate size I", arch.intermediate], ["vocabulary", f"{arch.vocab_size:,}"],
            ["positions", arch.max_positions], ["embedding parameters", f"{arch.embedding_params:,}"],
            ["encoder-layer parameters", f"{arch.encoder_params:,}"],
            ["encoder + embeddings", f"{arch.embedding_params + arch.encoder_params:,}"],
            [f"encoder GFLOPs per {seq_len}-token sequence (matmuls)", f"{arch.encoder_flops(seq_len) / 1e9:.3f}"]]
    return table(["", shape(arch)], rows)


def latency_section(latency: Optional[dict], arch: Arch) -> str:
    """CPU latency rows of this shape (and BERT-large beside it) from a `bortzoo bench` results file."""
    if not latency:
        return ("Not measured for this card. `bortzoo bench --models D,A,H,I bert-large` measures it on your "
                "CPU; `bortzoo publish --latency FILE` puts a results file here.")
    meta, rows = latency["meta"], latency["rows"]
    large = get_arch("bert-large").short()
    mine = [r for r in rows if r["arch"] == arch.short()]
    if not mine:
        raise BortzooError(f"the latency file has no rows for {arch.short()} (it has {sorted({r['arch'] for r in rows})})")
    reference = {(r["batch"], r["seq"], r["threads"]): r for r in rows if r["arch"] == large}
    body = []
    for row in mine:
        ref = reference.get((row["batch"], row["seq"], row["threads"]))
        speedup = f"{ref['median_ms'] / row['median_ms']:.1f}x" if ref and arch.short() != large else ""
        body.append([row["batch"], row["seq"], row["threads"], f"{row['median_ms']:.1f}", f"{row['p90_ms']:.1f}",
                     f"{ref['median_ms']:.1f}" if ref else "", speedup])
    hardware = (f"{meta.get('cpu')} ({meta.get('cores')} cores), torch {meta.get('torch')}, transformers "
                f"{meta.get('transformers')}, {meta.get('dtype', 'float32')}, {meta.get('attn_implementation', '')} "
                f"attention; {meta.get('repeats')} timed rounds after {meta.get('warmup')} warm-up, measured "
                f"{meta.get('date', '')} by `bortzoo bench` (random weights: latency depends on the shape only)")
    return table(["batch", "seq", "threads", "median ms", "p90 ms", "BERT-large median ms", "BERT-large / this"],
                 body) + f"\n\nHardware: {hardware}."


def guard_metric_name(spec) -> str:
    """The number `bortzoo.serve.task_guard` scores, named: the task's metric, or the mean of its metrics (MRPC, STS-B)."""
    if len(spec.metrics) == 1:
        return spec.metrics[0]
    return f"score (mean of {' and '.join(spec.metrics)})"


def fast_cpu_section(optimized: Optional[dict], repo_id: str) -> Optional[str]:
    """The card's "Fast CPU inference" text from what `optimized.json` holds (None: no section)."""
    if not optimized:
        return None
    spec = get_task(optimized["task"])
    split = optimized["split"]
    board = next((item.board for item in spec.validation if item.split == split), spec.name)
    report = optimized["guard"]
    metric = optimized.get("metric") or guard_metric_name(spec)
    rows = report["examples"]
    whole = optimized.get("examples_requested", rows) > rows  # the split had fewer rows than asked for
    where = f"On {'all' if whole else 'the first'} {rows:,} rows of {board} {split}"
    engine = optimized.get("engine") or "torch-int8"
    if report.get("agreement") is not None:
        where += f", {engine} agreed with fp32 on {100 * report['agreement']:.2f}% of predictions"
    else:
        where += " (a regression task: there are no predicted classes to agree on)"
    if report.get("metric_fp32") is not None and report.get("metric_optimized") is not None:
        change = report.get("metric_change")
        change = report["metric_optimized"] - report["metric_fp32"] if change is None else change
        where += (f"{';' if report.get('agreement') is not None else ','} {metric} {report['metric_fp32']:.2f} "
                  f"(fp32) vs {report['metric_optimized']:.2f} ({engine}), change {change:+.2f} points")
    timed = [c for c in optimized.get("candidates", []) if c.get("ms")]
    table = ""
    if timed:
        shapes = list(timed[0]["ms"])
        lines = ["| engine | status | " + " | ".join(f"ms at {s}" for s in shapes) + " | agreement |",
                 "|---|---|" + "---|" * len(shapes) + "---|"]
        for c in optimized["candidates"]:
            ms = " | ".join(f"{c['ms'][s]:.2f}" if s in c.get("ms", {}) else "-" for s in shapes)
            agree = "-" if c.get("agreement") is None else f"{100 * c['agreement']:.2f}%"
            status = f"{c['status']} ({c['reason']})" if c.get("reason") else c["status"]
            lines.append(f"| {c['name']} | {status} | {ms} | {agree} |")
        table = "\n".join(lines) + "\n\n"
    return (
        f"`bortzoo.optimize` serves this model on a CPU with the fastest engine that holds its accuracy guard there: "
        f"bortzoo's own torch path (int8 linears, bf16 attention where the CPU has native bf16), ONNX Runtime, "
        f"OpenVINO or CTranslate2, each in int8 or fp32. On **{optimized.get('cpu')}** it chose **{engine}**. "
        "No optimised weights are stored in this repo: `optimize` builds them from the fp32 weights on the machine "
        "it runs on (and caches them there), so the download is the fp32 model's.\n\n"
        "```python\nimport bortzoo\n"
        f"model, tokenizer = bortzoo.load(\"{repo_id}\")\n"
        "fast = bortzoo.optimize(model)  # engine=\"auto\": measures the engines installed here, keeps the fastest "
        "that holds\nprint(fast.bortzoo_report.summary())\n```\n\n"
        f"{where}. Measured with `bortzoo.serve.task_guard` on {optimized.get('cpu')}, torch {optimized.get('torch')}, "
        f"{optimized.get('threads', '?')} thread(s); every engine considered (median ms per batch x seq):\n\n"
        f"{table}"
        "The full report is `optimized.json` in this repo.\n\n"
        "This is a measurement, not a gate: publishing refused nothing on it. Check the model on your own data "
        "with `bortzoo.serve.task_guard`, or give `bortzoo.optimize` `check=` batches to refuse a copy that disagrees "
        "with fp32."
    )


def shape(arch: Arch) -> str:
    """⟨D,A,H,I⟩: the paper's brackets (ASCII angle brackets would read as HTML in Markdown)."""
    return f"⟨{arch.depth},{arch.heads},{arch.hidden},{arch.intermediate}⟩"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


# -- references: how a published file names what the run read --------------------------------------
REPO_ROOT = PROJECT_ROOT  # recipes name the project's assets relative to it (bortzoo/assets/...)
# Endings a Hub repo id does not have but a local file does (a `.ckpt` is always a file of this machine).
FILE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".txt", ".text", ".json", ".jsonl", ".parquet",
                 ".csv", ".tsv", ".yaml", ".yml", ".gz", ".zip")


def is_local_ref(ref: Any) -> bool:
    """Whether `ref` names something of this machine rather than the Hub: not a Hub id, a file name (`.ckpt`,
    `.txt`, ...), a path under `runs/`, or a path that exists from here or from the repository root (where recipes
    run)."""
    text = str(ref).strip()
    if not is_hub_id(text) or text.lower().endswith(FILE_SUFFIXES) or text.split("/")[0] in ("runs", "~"):
        return True  # runs/: where recipes write their outputs
    return Path(text).exists() or (REPO_ROOT / text).exists()


def public_ref(ref: Any, what: str, task: Any = None, markdown: bool = False) -> str:
    """How a published file (card, metadata, JSON) names `ref`, a model, tokenizer, dataset or corpus the run read.

    The one rule: `ref` is shown as itself only when it is a Hub id that is not a local path (`is_local_ref`);
    anything else becomes neutral words that say what it was, never a path of this machine, not even a relative
    one. `what`: "model" (a transformers folder or a pretraining `.ckpt`), "tokenizer", "corpus", "data" (a
    task's `data_dir`: always a local folder, as `TaskData` reads it; `task` names the task, whose official Hub
    dataset the words name) or anything else (a file or folder). `markdown` puts Hub ids in backticks.
    """
    code = (lambda s: f"`{s}`") if markdown else (lambda s: s)
    text = str(ref).strip()
    if what == "data":
        spec = get_task(task) if isinstance(task, str) else task
        if spec is None:
            return "local data"
        boards = ", ".join(item.board for item in spec.validation) or spec.name
        return f"local data in the layout of {code(spec.dataset)} ({spec.benchmark.upper()} {boards})"
    if not is_local_ref(text):
        return code(text)
    checkpoint = text.lower().endswith(".ckpt")
    if what == "model":
        return (f"a local checkpoint (a bortzoo pretraining checkpoint, {code('.ckpt')})" if checkpoint
                else "a local checkpoint (a transformers model folder)")
    if what == "tokenizer":
        return "a local tokenizer folder"
    if what == "corpus":
        return "local text files"
    if checkpoint:
        return f"a local checkpoint ({code('.ckpt')})"
    return "a local file" if Path(text).suffix.lower() in FILE_SUFFIXES else "a local folder"


# -- eval results (model-index) ------------------------------------------------------------------
def task_eval_results(run: Run) -> list:
    """The run's dev results as `EvalResult`s: the published checkpoint's (best epoch), then seed means.

    An Agora run (`results["agora"]`) reports the held-out part of dev first, then the Agora dev part labelled
    optimistic, instead of the best epoch (which Agora scored on its dev part). The demo reads the first
    result per metric of a column (`bortzoo.demo.accuracy.card_scores`), so it shows the held-out number.
    """
    from huggingface_hub import EvalResult

    spec = get_task(run.results["task"])
    data_dir = run.data_args().get("data_dir")
    # dataset.type is the task's Hub dataset either way; a local copy says so in `args` (the name and config stay
    # the leaderboard column's and the Hub config's: the demo reads "GLUE RTE" back)
    local = {"data": f"{public_ref(data_dir, 'data', spec)}, not the Hub dataset itself"} if data_dir else None
    splits = {item.board: item.split for item in spec.validation}
    task_type = "multiple-choice" if spec.kind in MULTI_OPTION else "text-classification"
    best, seed = run.results["best"], run.results.get("seed")

    def result(board: str, name: str, value: float, label: str):
        return EvalResult(
            task_type=task_type, dataset_type=spec.dataset, dataset_name=f"{spec.benchmark.upper()} {board}",
            dataset_config=spec.config, dataset_split=splits.get(board, board), dataset_args=local,
            metric_type=HUB_METRICS[name], metric_value=round(float(value), 6), metric_name=f"{name} ({label})")

    out = []
    agora = run.results.get("agora")
    if agora:
        board = _agora_board(run)
        rows = _agora_rows(agora)
        out += [result(board, name, value, f"held-out {rows['held_out']} of {rows['dev']} dev rows, after Agora: "
                                           "never trained on, chose nothing")
                for name, value in agora["held_out"]["metrics"].items()]
        out += [result(board, name, value, f"Agora dev part, {rows['agora_dev']} of {rows['dev']} dev rows, "
                                           "optimistic: it chose the sets and fed training")
                for name, value in agora["agora_dev"]["metrics"].items()]
    else:
        for board, metrics in best["splits"].items():
            for name, value in metrics.items():
                out.append(result(board, name, value, f"dev, best epoch {best['epoch'] + 1}, seed {seed}"))
    if run.seeds:
        n = len(run.seeds["seeds"])
        for board, metrics in run.seeds["splits"].items():
            for name, stats in metrics.items():
                out.append(result(board, name, stats["mean"],
                                  f"dev, final epoch, mean of {n} seeds, std {stats['std']:.4f}"))
    return out


# -- Agora -----------------------------------------------------------------------------------------
def _agora_board(run: Run) -> str:
    """The leaderboard column Agora's dev split belongs to (Agora needs a task with exactly one dev split)."""
    spec = get_task(run.results["task"])
    boards = list(run.results["best"]["splits"]) or [item.board for item in spec.validation]
    return boards[0]


def _agora_rows(agora: dict) -> dict:
    held, dev = int(agora["held_out"]["rows"]), int(agora["agora_dev"]["rows"])
    return {"held_out": held, "agora_dev": dev, "dev": held + dev}


def agora_section(run: Run) -> Optional[str]:
    """The card's "Agora" text from `results["agora"]` (None: not an Agora run)."""
    agora = run.results.get("agora")
    if not agora:
        return None
    spec = get_task(run.results["task"])
    rows = _agora_rows(agora)
    final, weak = agora, agora.get("weak_model") or {}
    names = list(final["held_out"]["metrics"])
    body = []
    for model, scores in (("this model", final), ("weak model", weak)):
        if not scores:
            continue
        held, dev = scores.get("held_out") or {}, scores.get("agora_dev") or {}
        for name in names:
            body.append([model, name, _cell(held.get("metrics", {}).get(name)),
                         _cell(dev.get("metrics", {}).get(name))])
        if len(names) > 1:
            body.append([model, guard_metric_name(spec), _cell(held.get("score")), _cell(dev.get("score"))])
    scores = table(["model", "metric", f"held-out, {rows['held_out']} rows (×100)",
                    f"Agora dev, {rows['agora_dev']} rows (×100, optimistic)"], body)
    best = agora.get("best") or {}
    values = ", ".join(f"{k}: {v}" for k, v in (best.get("values") or {}).items())
    winner = f"`{best.get('set')}` of iteration {best.get('iteration')}" + (f" ({values})" if values else "")
    facts = [f"iterations: {agora.get('iterations')}", f"examples added to the training data: {agora.get('added')}",
             f"winning set: {winner}"]
    return (
        "This model was fine-tuned with Agora (`bortzoo agora`; de Wynter, 2020, arXiv 2010.07990). The task's dev "
        f"split ({rows['dev']} rows) was cut once, seeded and stratified, into an Agora dev part "
        f"({rows['agora_dev']} rows) and a held-out part ({rows['held_out']} rows). The weak model is the "
        "\"ok-ish\" fine-tune that labelled the examples Agora generated.\n\n"
        f"{scores}\n\n" + "\n".join(f"- {fact}" for fact in facts) + "\n\n"
        "The held-out numbers are the honest ones: those rows never entered training and chose nothing, while the "
        "Agora dev part chose the hyperparameter sets and its mistakes became training rows, so its scores (and "
        "the best-epoch table below, scored on it) are optimistic. The full report (every iteration's sets, "
        "scores and added examples, and the row ids of both parts) is `agora.json`, written by `bortzoo agora` "
        "and shipped with the model by `bortzoo publish`, with its plot `agora.png`."
    )


def _cell(value: Optional[float]) -> str:
    return "" if value is None else _pct(value)


def pretrained_eval_results(run: Run) -> list:
    from huggingface_hub import EvalResult

    validation = run.results.get("validation")
    if not validation:
        return []
    names = {"mlm_acc": ("accuracy", "masked-token accuracy (held-out)"),
             "teacher_agreement": ("accuracy", "top-1 agreement with the teacher (held-out)"),
             "loss": ("loss", "distillation loss (held-out)")}
    source, refs = _corpus_name(run), _corpus_refs(run)
    # all Hub datasets: their ids (as before); any local source: `text`, the `datasets` builder of local text files
    kind = source if refs and not any(is_local_ref(ref) for ref in refs) else "text"
    return [EvalResult(task_type="fill-mask", dataset_type=kind, dataset_name=f"held-out split of {source}",
                       dataset_split="validation", metric_type=names[k][0], metric_value=round(v, 6),
                       metric_name=f"{names[k][1]}, step {validation['step']}")
            for k, v in validation["metrics"].items() if k in names]


def candidate_eval_results(run: Run) -> list:
    from huggingface_hub import EvalResult

    r = run.results
    return [EvalResult(task_type="fill-mask", dataset_type="surrogate distillation batches",
                       dataset_name="held-out surrogate batches of the search", dataset_split="validation",
                       metric_type="loss", metric_value=round(float(r["error"]), 6),
                       metric_name=f"surrogate error: held-out distillation loss after {r['steps']} steps")]


def _corpus_refs(run: Run) -> list[str]:
    """The `path` of each corpus source (a dict as the recipe gives it, or a plain path)."""
    paths = [s.get("path") if isinstance(s, dict) else s for s in run.data_args().get("sources") or []]
    return [str(path) for path in paths if path]


def _corpus_name(run: Run) -> str:
    """The pretraining corpus in words: its Hub datasets by id, local sources as "local text files"."""
    names = list(dict.fromkeys(public_ref(ref, "corpus") for ref in _corpus_refs(run)))
    return ", ".join(names) or "the pretraining corpus"


# -- the card ------------------------------------------------------------------------------------
def render(run: Run, model_name: str, repo_id: Optional[str] = None, latency: Optional[dict] = None,
           base_model: Optional[str] = None, optimized: Optional[dict] = None):
    """The `ModelCard` of `run`: metadata plus the body of `model_cards/<kind>.md`.

    `optimized` (what `optimized.json` holds; task runs only) adds the "Fast CPU inference" section. The
    `model-index` metadata reports the fp32 model either way.
    """
    from huggingface_hub import ModelCard, ModelCardData

    template = card_template(run.kind)
    if optimized and run.kind != "task":
        raise BortzooError(f"a {run.kind} card has no fast CPU inference section: the accuracy check needs a "
                           "fine-tuned model and its task")
    builder = {"task": _task_context, "pretrained": _pretrained_context, "candidate": _candidate_context}[run.kind]
    context, metadata = builder(run, base_model)
    repo = repo_id or f"<org>/{model_name}"  # no repo id yet: a placeholder, never a local path
    context.update(model_name=model_name, repo_id=repo, arch_table=arch_table(run.arch),
                   latency=latency_section(latency, run.arch), citations=citations(), recipe_file="recipe.yaml",
                   known_losses=KNOWN_LOSSES, arch=shape(run.arch), fast_cpu=fast_cpu_section(optimized, repo))
    data = ModelCardData(language="en", license=LICENSE, library_name="transformers", model_name=model_name,
                         **metadata)
    return ModelCard.from_template(data, template_path=str(template), **context)


def _tags(*extra: str) -> list[str]:
    return ["bort", "bortzoo", "bert", *extra]


def _task_context(run: Run, base_model: Optional[str]) -> tuple[dict, dict]:
    spec = get_task(run.results["task"])
    args = run.model_args()
    source = base_model or args.get("model")
    data_dir = run.data_args().get("data_dir")
    best = run.results["best"]
    rows = [[board, name, _pct(value)] for board, metrics in best["splits"].items() for name, value in metrics.items()]
    agora = agora_section(run)
    seeds_table = None
    if run.seeds:
        seeds_table = table(["split", "metric", "mean", "± std (sample)", "seeds"], [
            [board, name, _pct(stats["mean"]), _pct(stats["std"]), ", ".join(map(str, run.seeds["seeds"]))]
            for board, metrics in run.seeds["splits"].items() for name, stats in metrics.items()])
    published = []
    for item in spec.validation:
        numbers = reported(spec.benchmark, item.board)
        if numbers:
            published += [[item.board, model, "/".join(f"{v:.1f}" for v in values)] for model, values in numbers.items()]
    lineage = _lineage(source, args, base_model)
    context = {
        "task": spec.name, "benchmark": spec.benchmark.upper(), "boards": ", ".join(i.board for i in spec.validation),
        "dataset": spec.dataset, "config": spec.config, "kind": spec.kind,
        "data": public_ref(data_dir, "data", spec, markdown=True) if data_dir else None,
        "labels": ", ".join(f"{i}: {n}" for i, n in enumerate(spec.label_names)) or None,
        "head": args.get("head"), "pair_encoding": run.data_args().get("pair_encoding", "tokenizer"),
        "results_table": table(["split", "metric", "Agora dev part (×100, optimistic)" if agora else "dev (×100)"],
                               rows), "best_epoch": best["epoch"] + 1,
        "epochs": run.results.get("epochs"), "seed": run.results.get("seed"), "seeds_table": seeds_table,
        "published_table": table(["split", "model", "test (×100)"], published) if published else None,
        "published_source": SOURCE, "lineage": lineage, "hparams": _hparams(args, ("lr", "weight_decay",
        "warmup_ratio", "layer_decay", "reinit_layers", "dropout")) + _hparams(run.data_args(), ("batch_size",
        "max_length")) + _hparams(run.config.get("trainer") or {}, ("max_epochs", "max_steps", "precision")),
        "truncated": run.results.get("truncated") or {}, "random_init": args.get("model") is None,
        "auto_class": "AutoModelForMultipleChoice" if spec.kind in MULTI_OPTION else "AutoModelForSequenceClassification",
        "config_sha256": run.results.get("config_sha256"), "agora": agora,
        "agora_rows": _agora_rows(run.results["agora"]) if agora else None,
    }
    metadata = {"pipeline_tag": None if spec.kind in MULTI_OPTION else "text-classification",
                "tags": _tags(spec.benchmark, spec.name), "datasets": [spec.dataset] if not data_dir else None,
                "base_model": source if source and not is_local_ref(source) else None,
                "metrics": sorted({HUB_METRICS[m] for m in spec.metrics}), "eval_results": task_eval_results(run)}
    return context, metadata


def _lineage(source: Optional[str], args: dict, base_model: Optional[str]) -> list[str]:
    """Where the weights came from, one step per line: teacher → pretrained encoder → this model."""
    if source is None:
        return ["a randomly initialised encoder (a pipeline check, not a model to use)", "this task model"]
    steps = []
    if str(source).lower() in ("amazon/bort",):
        steps += ["RoBERTa-large (teacher, `FacebookAI/roberta-large`)",
                  "Bort, distilled by its authors (`amazon/bort`, encoder weights)"]
    elif str(source).endswith(".ckpt"):
        steps.append(f"{public_ref(source, 'model', markdown=True)}, distilled as its recipe says")
    else:
        steps.append(public_ref(source, "model", markdown=True))
    steps.append("this task model (fine-tuned by the recipe below)")
    return steps


def _hparams(args: dict, keys: tuple[str, ...]) -> list[str]:
    return [f"{k}: {args[k]}" for k in keys if args.get(k) is not None]


def _pretrained_context(run: Run, base_model: Optional[str]) -> tuple[dict, dict]:
    args = run.model_args()
    teacher = ((args.get("teacher") or {}).get("init_args") or {}).get("source")
    validation = run.results.get("validation")
    rows = [[k, f"{v:.4f}"] for k, v in (validation or {}).get("metrics", {}).items()]
    context = {
        "teacher": public_ref(teacher, "model", markdown=True) if teacher else None, "corpus": _corpus_name(run),
        "distilled": teacher is not None,
        "validation_table": table(["metric", "value"], rows) if rows else None,
        "validation_step": (validation or {}).get("step"),
        "hparams": _hparams(args, ("alpha", "beta", "temperature", "lr", "weight_decay", "warmup_ratio")) +
        _hparams(run.data_args(), ("seq_len", "batch_size", "mlm_probability", "max_predictions")) +
        _hparams(run.config.get("trainer") or {}, ("max_steps", "precision")),
    }
    parent = next((ref for ref in (base_model, teacher) if ref and not is_local_ref(ref)), None)
    metadata = {"pipeline_tag": "fill-mask", "tags": _tags("fill-mask", "knowledge-distillation"),
                "base_model": parent, "eval_results": pretrained_eval_results(run) or None}
    return context, metadata


def _candidate_context(run: Run, base_model: Optional[str]) -> tuple[dict, dict]:
    r = run.results
    row = [[r["rank"], r["of"], f"{r['params']:,}", f"{r['flops'] / 1e9:.4f}",
            f"{r['latency_ms']:.2f}" if r.get("latency_ms") is not None else "", f"{r['error']:.4f}",
            f"{r['score']:.4f}", "yes" if r["pareto"] else "no"]]
    context = {
        "search_table": table(["rank", "of", "params", "GFLOPs", "latency ms", "error", "score", "Pareto"], row),
        "score_function": r.get("score_function"), "weights": r.get("weights"),
        "teacher": public_ref(r["teacher"], "model", markdown=True) if r.get("teacher") else "its teacher",
        "steps": r.get("steps"), "best_theta": r.get("best_theta"),
    }
    metadata = {"pipeline_tag": "fill-mask", "tags": _tags("fill-mask", "architecture-search", "candidate"),
                "base_model": base_model if base_model and not is_local_ref(base_model) else None,
                "eval_results": candidate_eval_results(run)}
    return context, metadata
