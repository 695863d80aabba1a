"""`bortzoo`: the table of verbs. Trainer verbs go to the Lightning CLI runner (`bortzoo.recipe`), the others to
the function each names. Nothing imports this module back.

    bortzoo fit|validate|test|predict --config recipes/...yaml   (LightningCLI, subclass mode)
    bortzoo VERB --config NAME   a packaged recipe by name, from any folder (bortzoo.resources.config_args)
    bortzoo bench [--models bort bert-large --threads 1 2] [--config bench.yaml]  (jsonargparse on a function)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable, Optional

from bortzoo.recipe import lightning_cli, user_error
from bortzoo.resources import config_args

TRAINER_VERBS = ("fit", "validate", "test", "predict")


def _bench() -> Callable:
    from bortzoo.serve.bench import bench

    return bench


def _export() -> Callable:
    from bortzoo.export import export

    return export


def _extract() -> Callable:
    from bortzoo.extract.search import extract

    return extract


def _agora() -> Callable:
    from bortzoo.agora.loop import agora

    return agora


def _publish() -> Callable:
    from bortzoo.publish.upload import publish

    return publish


def _demo() -> Callable:
    from bortzoo.demo.app import demo

    return demo


def _zoo_list() -> Callable:
    from bortzoo.zoo import zoo_list

    return zoo_list


def _plan() -> Callable:
    from bortzoo.plan import plan

    return plan


def _recipes() -> Callable:
    from bortzoo.resources import recipes

    return recipes


def _extract_report() -> Callable:
    from bortzoo.extract.report import report

    return report


# `bortzoo VERB SUBVERB ...`: verbs with a second word.
SUBVERBS: dict[str, dict[str, Callable[[], Callable]]] = {"extract": {"report": _extract_report},
                                                          "zoo": {"list": _zoo_list}}
# Verbs whose arguments without a default are positional (`bortzoo publish RUN_DIR`).
POSITIONAL = {"publish"}
# Verbs that take a Trainer recipe as --config (jsonargparse's own --config would read it as the verb's options).
RECIPE_OPTION = {"plan": "--recipe"}
# Verbs whose one optional argument may come first without its option (`bortzoo recipes NAME` = `--name NAME`).
OPTIONAL_POSITIONAL = {"recipes": "--name"}

# name → (loader of the function, one-line help).
VERBS: dict[str, tuple[Callable[[], Callable], str]] = {
    "demo": (_demo, "the Gradio demo: BERT-large vs Bort, predictions, live CPU latency, accuracy (127.0.0.1:7860)"),
    "bench": (_bench, "CPU inference latency of architectures side by side (median, p90, ratios)"),
    "export": (_export, "a Student checkpoint as a transformers masked-LM folder (safetensors + tokenizer)"),
    "extract": (_extract, "the optimal-subarchitecture search; `bortzoo extract report --out DIR` merges shards"),
    "agora": (_agora, "Agora fine-tuning: trials per hyperparameter set, dev mistakes rewritten into training rows, "
                      "pruning; held-out score"),
    "publish": (_publish, "a run as a Hub model repo with its card: bortzoo publish RUN_DIR --repo_id ORG/NAME"),
    "zoo": (_zoo_list, "the named checkpoints (`bortzoo zoo list`); load one with bortzoo.load(name)"),
    "plan": (_plan, "before a GPU run: FLOPs, tokens, memory per device and GPU-hours of a recipe (--config RECIPE)"),
    "recipes": (_recipes, "the recipes that ship with bortzoo, one line each; given a name, that recipe's YAML to copy"),
}

USAGE = """usage: bortzoo VERB [options]        (`bortzoo VERB --help` for the options of one verb)

Trainer verbs (Lightning CLI; a recipe YAML holds everything a run needs):
  fit        train a model:            bortzoo fit --config recipes/pretrain/bort-mlm-tiny.yaml
             over seeds, mean ± std:   bortzoo fit --config recipes/finetune/glue/sst2-bort-tiny.yaml --seeds 0,1,2
  validate   evaluate on the val split
  test       evaluate on the test split (GLUE: its dev splits, the test labels are hidden)
  predict    run predictions; fine-tune recipes write leaderboard files (GLUE zip)
  --config takes a path or a packaged recipe's name (`bortzoo recipes` lists them), from any folder:
                                       bortzoo fit --config pretrain/bort-mlm-tiny
Other verbs:
{others}
"""


def join_list_options(args: list[str]) -> list[str]:
    """`--models bort bert-large` → `--models [bort,bert-large]`: jsonargparse reads a list only as one token.

    Values holding a comma (an Arch such as 4,8,1024,768) are quoted so they stay one item.
    """
    joined: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        joined.append(token)
        index += 1
        if not token.startswith("--") or "=" in token:
            continue
        values = []
        while index < len(args) and not args[index].startswith("--"):
            values.append(args[index])
            index += 1
        if len(values) > 1:
            joined.append("[" + ",".join(json.dumps(v) if "," in v else v for v in values) + "]")
        else:
            joined.extend(values)
    return joined


def _underscored(token: str) -> str:
    """`--repo-id` → `--repo_id`: options are written either way (the parameters have underscores)."""
    if not token.startswith("--"):
        return token
    option, sep, value = token.partition("=")
    return option[:2] + option[2:].replace("-", "_") + sep + value


BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _bare_flags(function: Callable, args: list[str]) -> list[str]:
    """`--dry_run` alone means `--dry_run true` for a bool parameter (jsonargparse wants the value)."""
    import inspect

    flags = {f"--{name}" for name, p in inspect.signature(function).parameters.items()
             if p.annotation in (bool, "bool")}
    out: list[str] = []
    for index, token in enumerate(args):
        out.append(token)
        following = args[index + 1] if index + 1 < len(args) else None
        if token in flags and (following is None or following.lower() not in BOOL_WORDS):
            out.append("true")
    return out


def run_verb(name: str, args: list[str]):
    """Run a non-Trainer verb: its function's signature and docstring are its options and --help."""
    from jsonargparse import auto_cli

    args = config_args(args)
    if name in RECIPE_OPTION:
        args = [RECIPE_OPTION[name] if a == "--config" else
                (RECIPE_OPTION[name] + a[len("--config"):] if a.startswith("--config=") else a) for a in args]
    if name in OPTIONAL_POSITIONAL and args and not args[0].startswith("-"):
        args = [OPTIONAL_POSITIONAL[name], *args]
    subverbs = SUBVERBS.get(name, {})
    if args and args[0] in subverbs:
        function, prog, args = subverbs[args[0]](), f"bortzoo {name} {args[0]}", args[1:]
    else:
        function, prog = VERBS[name][0](), f"bortzoo {name}"
    args = _bare_flags(function, [_underscored(a) for a in args])
    extra = {"config_help": f"The recipe to plan (the same as {RECIPE_OPTION[name]})."} if name in RECIPE_OPTION else {}
    return auto_cli(function, args=join_list_options(args), prog=prog, as_positional=name in POSITIONAL, **extra)


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if not argv or argv[0] in ("-h", "--help"):
        others = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in VERBS.items())
        print(USAGE.format(others=others))
        return
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS and verb not in TRAINER_VERBS:
        valid = ", ".join([*TRAINER_VERBS, *VERBS])
        _fail(f"unknown verb {verb!r}; valid verbs: {valid}")
    try:
        if verb in VERBS:
            run_verb(verb, rest)
        elif verb == "fit" and any(a == "--seeds" or a.startswith("--seeds=") for a in rest):
            from bortzoo.seed_sweep import pop_seeds, run_seeds

            args, seeds = pop_seeds(rest)
            run_seeds(args, seeds)
        else:  # from the shell, let Lightning read sys.argv itself (passing it again makes it warn)
            lightning_cli(None if argv == sys.argv[1:] else argv)
    except Exception as err:  # jsonargparse wraps errors raised while building the recipe's classes
        cause = user_error(err)
        if cause is None:
            raise
        _fail(str(cause))
    except KeyboardInterrupt:
        _fail("interrupted; checkpoints already written are kept (resume with --ckpt_path last)", code=130)


def _fail(message: str, code: int = 2) -> None:
    print(f"bortzoo: error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
