"""Tests run offline with tiny everything: the project's own tokenizer, corpus and model folders."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# bortzoo.optimize's engine cache: one per test session, never the user's ~/.cache/bortzoo
os.environ["BORTZOO_CACHE"] = tempfile.mkdtemp(prefix="bortzoo-test-cache-")
atexit.register(shutil.rmtree, os.environ["BORTZOO_CACHE"], ignore_errors=True)

import pytest  # noqa: E402

from bortzoo.arch import Arch  # noqa: E402
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_CORPUS = REPO / "bortzoo" / "assets" / "tiny-corpus.txt"
TINY_ARCH = Arch(depth=2, heads=2, hidden=32, intermediate=64, vocab_size=512, max_positions=64)


def load_bench_script(name: str):
    """bench/ is not a package: load `bench/<name>.py` as a module by path."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_tokenizer_dir() -> str:
    return TINY_TOKENIZER_DIR


def make_bort_layout(folder: Path, arch: Arch = TINY_ARCH, seed: int = 0, safetensors: bool = True,
                     trained_head: bool = True) -> Path:
    """A model folder laid out like `amazon/bort`: BERT model type, RoBERTa tokenizer files, no tokenizer.json.
    `trained_head=False` leaves the masked-LM head at its initial values, as amazon/bort's own."""
    from bortzoo.export import write_random_masked_lm

    return write_random_masked_lm(folder, arch, seed=seed, safetensors=safetensors, trained_head=trained_head)


@pytest.fixture(scope="session")
def bort_layout_dir(tmp_path_factory) -> Path:
    return make_bort_layout(tmp_path_factory.mktemp("bort-layout"))


def recipe_copy(recipe: Path, tmp: Path, **overrides) -> Path:
    """`recipe` written into `tmp` with its outputs (everything under runs/) moved there too; dotted keys in
    `overrides` (``trainer.max_epochs=2``) replace values."""
    import yaml

    from bortzoo.recipe import apply_overrides
    from bortzoo.seed_sweep import move_paths

    config = move_paths(yaml.safe_load(Path(recipe).read_text()), "runs", str(tmp / "runs"))
    config = apply_overrides(config, overrides, str(recipe))
    path = tmp / Path(recipe).name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path



@pytest.fixture(scope="session")
def demo_folders(tmp_path_factory) -> dict:
    """Tiny random fine-tunes for both sides of the demo (see tests/demo_support.py)."""
    from demo_support import make_demo_folders

    return make_demo_folders(tmp_path_factory.mktemp("demo-models"))


@pytest.fixture
def fresh_hf_cache(tmp_path_factory, monkeypatch):
    """A fresh `datasets` cache for one test. `datasets` keys the cache of a local Hub-layout folder by the
    folder's name and its card, not by its path or contents, so an edited copy of a fixture folder would
    otherwise read the cached, unedited tables."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-cache"))
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


@pytest.fixture(scope="session")
def agora_tiny_run(tmp_path_factory):
    """The tiny RTE Agora recipe through the CLI, killed after its first trial, then run again to the end (shared by
    the Agora and card tests: one run per session)."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from bortzoo.cli import main

    tmp = tmp_path_factory.mktemp("agora")
    recipe = recipe_copy(REPO / "recipes" / "agora" / "rte-bort-tiny.yaml", tmp)
    out = Path(yaml.safe_load(recipe.read_text())["out"])
    first_trial = out / "iter-1" / "trials" / "set-000" / "trial.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = tmp / "killed-run.log"  # a file, not a pipe: an unread pipe would fill and stall the run
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "bortzoo.cli", "agora", "--config", str(recipe)], cwd=REPO,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while not first_trial.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first_trial.exists(), log.read_text(errors="replace")[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_state = json.loads((out / "state.json").read_text())
    first = first_trial.read_text(), first_trial.stat().st_mtime_ns
    assert not (out / "agora.json").exists()
    cwd = os.getcwd()
    os.chdir(REPO)  # the recipes name the fixtures, the tokenizer and each other relative to the repository root
    try:
        main(["agora", "--config", str(recipe)])
    finally:
        os.chdir(cwd)
    return {"out": out, "recipe": recipe, "killed_state": killed_state, "first": first, "first_trial": first_trial}


def dataset_folder(spec, root=None) -> str:
    """The fixtures folder that stands in for `spec.dataset` (load it with `spec.config` as the name)."""
    from bortzoo.data.tiny_tasks import FOLDERS, TINY_TASKS_DIR

    assert spec.dataset in FOLDERS, f"no fixtures for dataset {spec.dataset!r}; fixtures exist for {list(FOLDERS)}"
    return str(Path(root or TINY_TASKS_DIR) / FOLDERS[spec.dataset])


@pytest.fixture
def two_engines(monkeypatch):
    """bortzoo.optimize(engine="auto") choosing between the own torch path and ONNX Runtime only: for tests of what
    uses the choice (publish, the demo, the benches), where building every engine for each model would cost CI
    minutes. Every engine is tested in tests/test_engine_*.py and together in tests/real/test_real_engines.py."""
    from bortzoo.serve import optimize as opt_mod

    monkeypatch.setattr(opt_mod, "ENGINE_NAMES", ("torch", "ort"))
