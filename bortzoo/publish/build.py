"""The Hub folder of a run, built offline and deterministically: weights, config, tokenizer, the public
recipe.yaml and results.json, the card, and (with --optimized) optimized.json. No file names a path of the
machine it was built on. The upload and the `publish` verb are in `bortzoo.publish.upload`."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import yaml

from bortzoo.errors import BortzooError, first_line
from bortzoo.files import RESULTS_FILE, SUMMARY_FILE, write_json, write_text
from bortzoo.publish.run_folder import Run
from bortzoo.resources import project_path

LATENCY_DIR = "latency"
OPTIMIZED_FILE = "optimized.json"


# -- the folder ------------------------------------------------------------------------------------
def build_folder(run: Run, out: str | Path, repo_id: Optional[str] = None, latency: Optional[dict] = None,
                 base_model: Optional[str] = None) -> Path:
    """Write the Hub folder of `run` to `out`; a failed build leaves an earlier `out` untouched."""
    from bortzoo.export import replacing_folder

    with replacing_folder(out, "publish folder") as staging:
        {"task": _task_files, "pretrained": _pretrained_files, "candidate": _candidate_files}[run.kind](run, staging)
        write_card(run, staging, repo_id=repo_id, latency=latency, base_model=base_model)
    return Path(out)


def write_card(run: Run, folder: Path, repo_id: Optional[str] = None, latency: Optional[dict] = None,
               base_model: Optional[str] = None, optimized: Optional[dict] = None) -> None:
    """(Re)write `folder/README.md`, the card of `run` (with the fast CPU section when `optimized` is given)."""
    from bortzoo.publish.cards import render

    name = repo_id.split("/")[-1] if repo_id else _default_name(run)
    card = render(run, name, repo_id=repo_id, latency=latency, base_model=base_model, optimized=optimized)
    write_text(folder / "README.md", str(card) + "\n")


def _default_name(run: Run) -> str:
    folder = run.extra.get("sweep_folder") or run.folder
    return f"{Path(folder).name}-{run.arch.short().strip('<>').replace(',', '-')}" if run.kind == "candidate" \
        else Path(folder).name


# -- no path of this machine leaves it ---------------------------------------------------------------
# A run's files name what it read and wrote by local paths. What the folder ships names Hub ids as they are and
# anything local in neutral words (`bortzoo.publish.cards.public_ref`: the card and the JSON files) or, in recipe.yaml,
# which must still say how to run it again, by a placeholder (`<run folder>/...`, `<local: NAME>`).
RECIPE_NOTE = (
    "# The resolved recipe of this model's run, as `bortzoo publish` ships it: the paths of the machine it ran on\n"
    "# are placeholders. <run folder> is the run's own output folder (give yours, e.g. trainer.default_root_dir);\n"
    "# <local: NAME> is a local file or folder called NAME (point it at your copy). Hub ids and paths inside the\n"
    "# bortzoo repository are as the run had them.\n")
RELATIVE_PATH = re.compile(r"[\w.~@+-]+(?:[/\\][\w.~@+*?\[\]-]*)+")  # a/b, a/b/, ./x, runs/x/*.txt
# Keys whose string value is a reference, and what it refers to (the words `public_ref` says for a local one).
REF_KINDS = {"model": "model", "teacher": "model", "source": "model", "tokenizer": "tokenizer", "data_dir": "data",
             "data": "data", "path": "corpus", "sources": "corpus", "val_sources": "corpus"}


def _names_a_path(value: str, key: Any) -> bool:
    """Whether a string of a run file names a local path, rather than a word, a Hub id or a row of text."""
    from bortzoo.publish.cards import is_local_ref

    text = value.strip()
    if not text or "://" in text:
        return False
    if text.startswith(("/", "~", "\\")) or re.match(r"[A-Za-z]:[\\/]", text):
        return True  # absolute: this machine's, whatever the key
    if key == "data_dir":
        return True  # a task's data_dir is a local folder by definition (TaskData reads nothing else)
    blank = any(c.isspace() for c in text)
    if key in REF_KINDS:  # a reference: local unless a Hub id (a bare name too: "tok", "last.ckpt")
        return (not blank or "/" in text or "\\" in text) and is_local_ref(text)  # not "random <2,2,64,128>"
    if blank or not RELATIVE_PATH.fullmatch(text):
        return False  # a sentence, "random <2,2,64,128>", a bare name ("metrics.csv")
    return is_local_ref(text)


def public_json(data: Any, task: Any = None, key: Any = None) -> Any:
    """`data` (what a run file holds) with every local path in neutral words (`bortzoo.publish.cards.public_ref`)."""
    from bortzoo.publish.cards import public_ref

    if isinstance(data, dict):
        return {k: public_json(v, task, k) for k, v in data.items()}
    if isinstance(data, list):
        return [public_json(v, task, key) for v in data]
    if isinstance(data, str) and _names_a_path(data, key):
        return public_ref(data, REF_KINDS.get(key, "path"), task)
    return data


def _ship_json(source: Path, target: Path, task: Any = None) -> None:
    """Copy a run's JSON file, rewritten (same layout as `bortzoo.files.write_json`) where it names local paths."""
    data = json.loads(source.read_text(encoding="utf-8"))
    public = public_json(data, task)
    if public == data:
        shutil.copyfile(source, target)
    else:
        target.write_text(json.dumps(public, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def public_recipe(config: Any, run: Run, key: Any = None) -> Any:
    """`config` with this machine's paths as placeholders: `<run folder>/...` under the run's folder, `<local:
    NAME>` elsewhere; Hub ids and relative paths inside the bortzoo repository (its assets) stay."""
    if isinstance(config, dict):
        return {k: public_recipe(v, run, k) for k, v in config.items()}
    if isinstance(config, list):
        return [public_recipe(v, run, key) for v in config]
    if isinstance(config, str) and _names_a_path(config, key):
        return _placeholder(config, run) or config
    return config


def _placeholder(value: str, run: Run) -> Optional[str]:
    from bortzoo.publish.cards import REPO_ROOT

    text = os.path.expanduser(value.strip())
    path, root = os.path.abspath(text), os.path.abspath(run.folder)
    if path == root:
        return "<run folder>"
    if path.startswith(root.rstrip(os.sep) + os.sep):
        return "<run folder>/" + Path(os.path.relpath(path, root)).as_posix()
    relative = os.path.normpath(text)
    if not os.path.isabs(text) and relative.split(os.sep)[0] not in ("..", "runs") and (REPO_ROOT / relative).exists():
        return None  # e.g. bortzoo/assets/tiny-tokenizer: whoever has the repository has it
    name = _plain_name(path)
    return f"<local: {name}>" if name else "<local>"


def _plain_name(path: str) -> Optional[str]:
    """The last part of a local path, unless it would name the user, their home or a temporary folder."""
    import getpass
    import tempfile

    home = os.path.expanduser("~")
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name to hide
        user = None
    name = os.path.basename(path.rstrip(os.sep))
    hidden = path in (home, os.path.dirname(home), tempfile.gettempdir()) or name in (os.path.basename(home), user)
    return None if not name or hidden or re.match(r"(tmp|temp|pytest-)", name, re.IGNORECASE) else name


def _write_recipe(run: Run, folder: Path, sort_keys: bool = False) -> None:
    """recipe.yaml: the run's recipe, with this machine's paths as placeholders and a note at its top saying so."""
    public = public_recipe(run.config, run)
    yaml_file = run.recipe.suffix in (".yaml", ".yml")
    if public == run.config and yaml_file:
        shutil.copyfile(run.recipe, folder / "recipe.yaml")  # nothing to hide: the run's own file
        return
    note = RECIPE_NOTE if public != run.config else ""
    first = run.recipe.read_text(encoding="utf-8").split("\n", 1)[0] if yaml_file else ""
    if re.fullmatch(r"# lightning(\.pytorch)?==[\w.+-]+", first):  # the version line Lightning writes: kept
        note += first + "\n"
    write_text(folder / "recipe.yaml", note + yaml.safe_dump(public, sort_keys=sort_keys))


def _task_files(run: Run, folder: Path) -> None:
    from bortzoo.convert import save_tokenizer, to_hf
    from bortzoo.data.encoding import Template
    from bortzoo.modules import TaskModel

    try:
        model = TaskModel.load_from_checkpoint(str(run.checkpoint), map_location="cpu", weights_only=True)
    except (KeyError, RuntimeError, TypeError) as err:
        raise BortzooError(f"{run.checkpoint} is not a TaskModel checkpoint: {str(err).splitlines()[0]}") from None
    if model.tokenizer is None:
        raise BortzooError(f"{run.checkpoint}: the model names no tokenizer to ship (set model.init_args.tokenizer)")
    from bortzoo.export import save_quietly

    save_quietly(to_hf(model), folder)
    recorded = run.results.get("pair_template")  # runs from before results.json recorded it: from the recipe
    template = (Template.from_dict(recorded) if recorded else
                Template.of(model.tokenizer, run.data_args().get("pair_encoding", "tokenizer")))
    save_tokenizer(model.tokenizer, folder, template)
    _write_recipe(run, folder)
    task = run.results["task"]
    _ship_json(run.folder / RESULTS_FILE, folder / RESULTS_FILE, task)
    if (run.folder / "agora.json").is_file():  # an Agora run's full report ships with the model, and its plot
        _ship_json(run.folder / "agora.json", folder / "agora.json", task)
    if (run.folder / "agora.png").is_file():
        shutil.copyfile(run.folder / "agora.png", folder / "agora.png")
    if run.seeds is not None:
        write_json(folder / SUMMARY_FILE, public_json(run.seeds, task), sort_keys=True)


def _pretrained_files(run: Run, folder: Path) -> None:
    if run.model_folder is not None:
        for path in sorted(run.model_folder.iterdir()):
            if path.is_file():
                shutil.copyfile(path, folder / path.name)
    else:
        from bortzoo.export import export_masked_lm
        from bortzoo.hub import load_tokenizer
        from bortzoo.modules import Student

        student = Student.load_from_checkpoint(str(run.checkpoint), map_location="cpu", weights_only=True, teacher=None)
        tokenizer = run.data_args().get("tokenizer")
        export_masked_lm(student.model, load_tokenizer(tokenizer) if tokenizer else None, folder / "model")
        for path in (folder / "model").iterdir():
            path.rename(folder / path.name)
        (folder / "model").rmdir()
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "vocab.txt")):
        raise BortzooError(f"{run.folder}: the exported model has no tokenizer files to ship")
    _write_recipe(run, folder)
    write_json(folder / RESULTS_FILE, public_json(run.results), sort_keys=True)


def _candidate_files(run: Run, folder: Path) -> None:
    from bortzoo.hub import load_tokenizer

    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(run.model_folder / name, folder / name)
    load_tokenizer(run.extra["tokenizer"]).save_pretrained(folder)
    _write_recipe(run, folder, sort_keys=True)
    write_json(folder / RESULTS_FILE, public_json(run.results), sort_keys=True)


# -- latency ---------------------------------------------------------------------------------------
def resolve_latency(latency: Optional[str], run: Run) -> Optional[dict]:
    """The `bortzoo bench` results the card quotes: a given file, none, or ("auto") the run's own
    `latency/` results, measured once (this shape and BERT-large) and reused so re-publishing is stable."""
    if latency is None or str(latency).lower() in ("none", "off", "false"):
        return None
    if str(latency) != "auto":
        path = Path(latency)
        if not path.is_file():
            raise BortzooError(f"latency file {str(path)!r} does not exist (give a JSON written by `bortzoo bench`)")
        return _read_bench(path)
    folder = run.folder / LATENCY_DIR
    for path in sorted(folder.glob("latency-*.json")):
        data = _read_bench(path)
        if any(r.get("arch") == run.arch.short() for r in data["rows"]):
            return data
    from bortzoo.serve.bench import bench

    print(f"measuring CPU latency of {run.arch.short()} and BERT-large for the card (once; kept in {folder})")
    bench(models=[run.arch, "bert-large"], batch=1, seq=128, threads=1, warmup=3, repeats=10, out=str(folder),
          progress=False)
    return resolve_latency("auto", run)


def _read_bench(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise BortzooError(f"latency file {path} is not readable JSON: {err}") from None
    if not isinstance(data, dict) or "meta" not in data or "rows" not in data:
        raise BortzooError(f"latency file {path} is not a `bortzoo bench` results file (no 'meta' and 'rows')")
    return data


# -- the optimised model ---------------------------------------------------------------------------
def _number(value: Optional[float]) -> Optional[float]:
    """JSON has no NaN: a metric that is not a number (a correlation of constant predictions) is written as null."""
    return None if value is None or math.isnan(value) else value


def _no_paths(text: str) -> str:
    """A library's error line without the file paths of this machine (a card never carries one)."""
    return re.sub(r"(?<![\w.])(?:[A-Za-z]:)?[/\\][^\s'\"]+", "<path>", text)


def measure_optimized(run: Run, folder: Path, examples: int = 1000) -> dict:
    """`bortzoo.optimize(engine="auto")` on the built `folder`, its guard held to the first `examples` rows of the
    task's first dev split (read from where the run read its data: its `data_dir`, or the Hub), and the chosen
    engine's agreement and metric against fp32 on them (`bortzoo.serve.task_guard`).

    Returns what `optimized.json` holds. A failure is one BortzooError line; the folder is left as built.
    """
    import torch

    from bortzoo.publish.cards import guard_metric_name, public_ref
    from bortzoo.serve.cpu import cpu_summary
    from bortzoo.serve.task_guard import optimize_for_task
    from bortzoo.tasks import get_task

    if run.kind != "task":
        raise BortzooError(f"--optimized needs a fine-tune run; {run.folder} is a {run.kind} run")
    spec = get_task(run.results["task"])
    split = spec.eval_splits("validate")[0].split  # the split task_guard reads (MNLI: matched)
    data_dir = run.data_args().get("data_dir")
    data_dir = project_path(str(data_dir)) if data_dir else None  # a tiny recipe's bortzoo/assets/... from anywhere
    max_length = int(run.data_args().get("max_length") or 128)
    kept = (f"the folder is built at {folder} without {OPTIMIZED_FILE}: fix the cause and run again, or publish "
            "without --optimized")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BortzooError(f"--optimized: the run read {spec.name} from data_dir {data_dir!r}, which is not a folder "
                           f"from here (run publish where the run was started); {kept}")
    print(f"choosing the fastest CPU engine that holds the guard on up to {examples:,} rows of {spec.name} {split} "
          f"({data_dir or spec.dataset}) for the card")
    try:
        optimized = optimize_for_task(str(folder), spec.name, data_dir=data_dir, examples=examples,
                                      max_length=max_length, engine="auto",
                                      pair_encoding="tokenizer")  # the built tokenizer carries the run's pair template
        report, choice = optimized.bortzoo_task_guard, optimized.bortzoo_report
    except BortzooError as err:
        raise BortzooError(f"--optimized: the accuracy check failed: {first_line(err)}; {kept}") from None
    except Exception as err:  # noqa: BLE001 - anything else that stops the measurement, said in one line
        raise BortzooError(f"--optimized: the accuracy check failed ({type(err).__name__}: {first_line(err)}); "
                           f"{kept}") from err
    print(f"{report.engine} against fp32 on {spec.name} {split}: {report.summary()}")
    return {
        "engine": report.engine,
        "candidates": [{"name": c.name, "status": c.status, "ms": c.ms, "agreement": _number(c.agreement),
                        "metric_change": _number(c.metric_change), "reason": _no_paths(c.reason)}
                       for c in choice.candidates],
        "shapes": [list(shape) for shape in choice.shapes],
        "threads": choice.threads,
        "versions": {k: v for k, v in choice.versions.items() if v},
        "torch": torch.__version__,
        "cpu": cpu_summary(),  # name and the flags that choose kernels
        "guard": report.as_dict(),
        "task": spec.name,
        "split": split,
        "examples": report.examples,
        "examples_requested": examples,
        "metric": guard_metric_name(spec),
        "data": public_ref(data_dir, "data", spec) if data_dir else spec.dataset,  # never a local path
        "max_length": max_length,
    }
