"""`bortzoo publish RUN_DIR --repo-id ORG/NAME`: a run as a Hub-ready folder with its card, then one commit.

The folder is built offline and deterministically (the same run gives the same bytes, so publishing it
again changes nothing on the Hub): safetensors weights, `config.json`, tokenizer files, `recipe.yaml`
(the resolved recipe), `results.json` (the run's numbers) and `README.md` (the card, from
`model_cards/<kind>.md`). The upload is `create_repo(exist_ok=True)` then one `upload_folder` commit.
The token comes from where huggingface_hub keeps it (`HF_TOKEN`, `hf auth login`) and is never
printed; a missing token or an unreachable Hub stops the command before anything is built.

No file of the folder names a path of the machine it was built on: the card and the JSON files name Hub ids
as they are and anything local in words (`bortzoo.publish.cards.public_ref`); `recipe.yaml` keeps Hub ids and paths
inside the repository, and shows other local paths as `<run folder>/...` or `<local: NAME>`, said in a comment
at its top.

`--optimized` (fine-tunes) adds `optimized.json`: `bortzoo.serve.task_guard`'s comparison of the int8 model
`bortzoo.optimize` makes with fp32 on the task's dev split, measured on the built folder, and quoted in
the card. Its numbers are deterministic for the same weights and data on the same machine; the CPU and
torch version it names are this machine's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from bortzoo.errors import BortzooError
from bortzoo.files import write_json
from bortzoo.publish.build import (
    OPTIMIZED_FILE,
    build_folder,
    measure_optimized,
    resolve_latency,
    write_card,
)
from bortzoo.publish.run_folder import Run, read_run


# -- the Hub ---------------------------------------------------------------------------------------
def hub_client(endpoint: Optional[str] = None):
    """An authenticated `HfApi`, checked against the Hub before any work: the token exists and is accepted."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from bortzoo.hub import NETWORK_ERRORS

    token = get_token()
    if not token:
        raise BortzooError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (or use --dry-run to build "
                           "the folder only); nothing was built or sent")
    api = HfApi(endpoint=endpoint, token=token)
    where = endpoint or "the Hugging Face Hub"
    try:
        user = api.whoami()
    except OfflineModeIsEnabled:
        raise BortzooError("HF_HUB_OFFLINE is set: unset it to publish, or use --dry-run; nothing was built or "
                           "sent") from None
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status == 401:
            raise BortzooError(f"{where} rejected the token (401): log in again with `hf auth login`; nothing was "
                               "built or sent") from None
        raise BortzooError(f"{where} answered {status} to the token check; nothing was built or sent") from None
    except NETWORK_ERRORS as err:  # connection refused, DNS, timeouts
        raise BortzooError(f"cannot reach {where} ({type(err).__name__}); check the network or HF_ENDPOINT, or use "
                           "--dry-run; nothing was built or sent") from None
    return api, user


def upload(api, folder: Path, repo_id: str, private: bool = False, revision: Optional[str] = None,
           create_pr: bool = False, commit_message: Optional[str] = None, collection: Optional[str] = None):
    """create_repo(exist_ok) → (branch) → one upload_folder commit → (collection item). Returns the CommitInfo."""
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, create_pr=create_pr,
                             commit_message=commit_message or f"bortzoo publish {folder.name}")
    if collection:
        api.add_collection_item(collection, item_id=repo_id, item_type="model", exists_ok=True)
    return info


def _files(folder: Path) -> list[tuple[str, int]]:
    return [(str(p.relative_to(folder)), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]


# -- the verb --------------------------------------------------------------------------------------
def publish(
    run_dir: str,
    repo_id: Optional[str] = None,
    out: Optional[str] = None,
    dry_run: bool = False,
    private: bool = False,
    revision: Optional[str] = None,
    create_pr: bool = False,
    commit_message: Optional[str] = None,
    collection: Optional[str] = None,
    seed: Optional[int] = None,
    candidate: Optional[str] = None,
    latency: Optional[str] = "auto",
    base_model: Optional[str] = None,
    endpoint: Optional[str] = None,
    optimized: bool = False,
    optimized_examples: int = 1000,
) -> dict:
    """Publish a fine-tuning, pretraining or extraction run to the Hub as a model repo with its card.

    With --optimized (fine-tunes only), the built folder is also checked the way `bortzoo.optimize` runs it
    on a CPU: `bortzoo.serve.task_guard` compares the int8 model with fp32 on the first --optimized-examples rows
    of the task's dev split (read from the run's data_dir, or the Hub), writes the numbers to
    `optimized.json` and adds a "Fast CPU inference" section to the card. It is a measurement, not a gate:
    nothing is refused on it, no int8 weights are saved (optimize derives them from the fp32 weights at load
    time), and the card's model-index still reports the fp32 model.

    Args:
        run_dir: The run folder: a fine-tune (results.json), a seed sweep (seeds.json), a pretraining
            (checkpoints/ and the exported model/) or an extraction (search-*.json).
        repo_id: Hub repo ORG/NAME to create (if needed) and commit to; not needed with --dry-run.
        out: Where to build the Hub folder (default: RUN_DIR/hub); replaced atomically.
        dry_run: Build the folder and print its files; nothing is sent and no token is needed.
        private: Create the repo private.
        revision: Branch to commit to (created if missing); default main.
        create_pr: Open a pull request with the commit instead of committing to the branch.
        commit_message: Commit message (default: "bortzoo publish <folder>").
        collection: Slug of a Hub collection to add the repo to (e.g. ORG/bortzoo-0123456789abcdef).
        seed: Seed to publish from a sweep (default: the best dev score).
        candidate: Architecture "D,A,H,I" to publish from an extraction (default: the winner).
        latency: CPU latency for the card: "auto" (the run's latency/ results, measured once if absent), a
            `bortzoo bench` JSON file, or "none".
        base_model: Hub id of the model this one was trained from, when the run names a local path.
        endpoint: Hub URL (default: $HF_ENDPOINT or huggingface.co).
        optimized: Fine-tunes only: measure the int8 model (`bortzoo.optimize`) against fp32 on the built
            folder with `bortzoo.serve.task_guard` (the task's dev split, from the run's data_dir or the Hub), write
            optimized.json and the card's "Fast CPU inference" section. A measurement, not a gate: nothing is
            refused on it, no int8 weights are saved (optimize derives them at load time) and the model-index
            still reports fp32.
        optimized_examples: Dev rows the --optimized check reads (the first ones; default 1000).
    """
    if create_pr and revision:
        raise BortzooError("--create-pr opens a pull request against main; it cannot be combined with --revision")
    if isinstance(optimized_examples, bool) or not isinstance(optimized_examples, int) or optimized_examples < 1:
        raise BortzooError(f"--optimized-examples must be a positive number of dev rows, got {optimized_examples!r}")
    if not dry_run:
        if not repo_id:
            raise BortzooError("give --repo_id ORG/NAME to publish to, or --dry_run to build the folder only")
        from bortzoo.hub import is_hub_id

        if "/" not in repo_id or not is_hub_id(repo_id):
            raise BortzooError(f"--repo_id {repo_id!r} is not a Hub repo id of the form ORG/NAME")
    api = None if dry_run else hub_client(endpoint)[0]  # fail before any work
    run = read_run(run_dir, seed=seed, candidate=candidate)
    if optimized and run.kind != "task":
        raise BortzooError(f"--optimized checks a fine-tuned model on its task's dev split; {run_dir} is a {run.kind} "
                           "run, which has no task: publish it without --optimized; nothing was built or sent")
    target = Path(out) if out else Path(run_dir) / "hub"
    latency_data = resolve_latency(latency, run)
    folder = build_folder(run, target, repo_id=repo_id, latency=latency_data, base_model=base_model)
    guard = None
    if optimized:  # measured on the built folder, as it will be downloaded
        guard = measure_optimized(run, folder, optimized_examples)
        write_card(run, folder, repo_id=repo_id, latency=latency_data, base_model=base_model, optimized=guard)
        write_json(folder / OPTIMIZED_FILE, guard, sort_keys=True)
    files = _files(folder)
    print(f"built {folder} ({run.kind} {run.arch.short()}):")
    for name, size in files:
        print(f"  {name:<28} {size:>12,} bytes")
    result: dict[str, Any] = {"folder": str(folder), "kind": run.kind, "files": [n for n, _ in files]}
    if guard is not None:
        result["optimized"] = guard
    if dry_run:
        print("dry run: nothing sent")
        return result
    from huggingface_hub.errors import HfHubHTTPError

    from bortzoo.hub import NETWORK_ERRORS

    try:
        info = upload(api, folder, repo_id, private, revision, create_pr, commit_message, collection)
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        raise BortzooError(f"the Hub refused the upload to {repo_id} ({status}: {str(err).splitlines()[0]}); the "
                           f"folder is built at {folder}: fix the cause and run again") from None
    except NETWORK_ERRORS as err:
        raise BortzooError(f"the upload to {repo_id} broke off ({type(err).__name__}); the folder is built at "
                           f"{folder}: run again, files already on the Hub are not sent twice") from None
    result.update(commit=getattr(info, "oid", None), url=getattr(info, "commit_url", None),
                  pr_url=getattr(info, "pr_url", None))
    print(f"published {repo_id}: {result['pr_url'] or result['url']}")
    print(zoo_snippet(run, repo_id, revision or None))
    return result


def zoo_snippet(run: Run, repo_id: str, revision: Optional[str]) -> str:
    """The registry line that lists the new checkpoint in `bortzoo/zoo.py`."""
    kind = {"task": "task", "pretrained": "masked-lm", "candidate": "candidate"}[run.kind]
    from bortzoo.arch import PRESETS

    arch = next((name for name, preset in PRESETS.items() if preset == run.arch), run.arch.as_dict())
    task = f", task={run.results['task']!r}" if run.kind == "task" else ""
    rev = f", revision={revision!r}" if revision else ""
    name = repo_id.split("/")[-1]
    return (f"to list it in the zoo, add to bortzoo/zoo.py:\n  register(ZooEntry({name!r}, {repo_id!r}, {kind!r}, "
            f"{arch!r}{rev}{task}, by=\"bortzoo\"))")
