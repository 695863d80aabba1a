"""The Lightning CLI runner behind `bortzoo fit|validate|test|predict`, reused by `--seeds` and Agora's trials.

`lightning_cli(args)` runs (or, for recipe checks, only parses) a recipe with `--config` taking a packaged
recipe's name too; `resolved_config` is the recipe as the run resolved it; `user_error` finds the
`BortzooError` that jsonargparse or Lightning wrapped, so the command can print it without a traceback;
`apply_overrides` sets dotted keys of a recipe (Agora's trials, the full-shape smoke runs, the tests).
"""

from __future__ import annotations

import copy
import sys
from typing import Any, Optional

from bortzoo.errors import BortzooError
from bortzoo.resources import config_args


def make_cli_class():
    """The LightningCLI subclass (built lazily: importing Lightning takes seconds)."""
    from lightning.pytorch.cli import LightningCLI

    class BortzooCLI(LightningCLI):
        """LightningCLI whose `parse_only` mode checks a recipe without building anything."""

        parse_only = False

        def instantiate_classes(self) -> None:
            if not self.parse_only:
                super().instantiate_classes()
                connect(self.model, self.datamodule)

        def _run_subcommand(self, subcommand: str) -> None:
            if not self.parse_only:  # `lightning_cli(["test", "--config", R, ...], parse_only=True)`: parsed, not run
                super()._run_subcommand(subcommand)

    return BortzooCLI


def resolved_config(cli) -> dict:
    """The subcommand's resolved config as plain data (what SaveConfigCallback writes as config.yaml)."""
    import yaml

    parser = cli._parser(cli.subcommand) if cli.subcommand else cli.parser
    config = cli.config[cli.subcommand] if cli.subcommand else cli.config
    return yaml.safe_load(parser.dump(config, skip_none=False, skip_validation=True))


def connect(model, datamodule) -> None:
    """Where a recipe's model and data meet: the data module gets what it needs from the model (the model's
    tokenizer, through `datamodule.connect`), once both are built and checked to fit. Outside the CLI, call
    `data.connect(model.tokenizer)` yourself."""
    check_vocab(model, datamodule)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and callable(getattr(datamodule, "connect", None)):
        datamodule.connect(tokenizer)


def check_vocab(model, datamodule) -> None:
    """A student whose vocabulary differs from the data's tokenizer would index out of range mid-run."""
    arch = getattr(model, "arch", None)
    tokenizer = getattr(datamodule, "tokenizer", None)
    if arch is not None and tokenizer is not None and len(tokenizer) != arch.vocab_size:
        raise BortzooError(
            f"model vocabulary ({arch.vocab_size}) differs from the tokenizer's ({len(tokenizer)} tokens): set "
            f"model.init_args.arch.vocab_size to {len(tokenizer)} or use the model's own tokenizer"
        )


def lightning_cli(args: Optional[list[str]], run: bool = True, parse_only: bool = False):
    """Run (or only parse, for recipe checks) the Lightning CLI on `args` (None: sys.argv), where `--config`
    takes a packaged recipe's name too."""
    from lightning import LightningDataModule, LightningModule

    if args is None:
        sys.argv[1:] = config_args(sys.argv[1:])  # Lightning reads sys.argv itself then
    else:
        args = config_args(list(args))

    cls = make_cli_class()
    cls.parse_only = parse_only
    return cls(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "bortzoo: Bort and its relatives on Lightning"},
        args=args,
        run=run,
    )


def user_error(err: BaseException) -> Optional[BortzooError]:
    """The `BortzooError` behind `err`, if any, however deep jsonargparse or Lightning wrapped it."""
    seen: set[int] = set()
    current: Optional[BaseException] = err
    while current is not None and id(current) not in seen:
        if isinstance(current, BortzooError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def apply_overrides(config: dict, overrides: Optional[dict[str, Any]], where: str) -> dict:
    """A copy of `config` with dotted keys replaced (``trainer.max_epochs: 4``; a number indexes a list)."""
    config = copy.deepcopy(config)
    for dotted, value in (overrides or {}).items():
        node: Any = config
        *parents, leaf = str(dotted).split(".")
        for key in parents:
            if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            elif isinstance(node, dict):
                node = node.setdefault(key, {})
            else:
                raise BortzooError(f"{where}: cannot set {dotted!r}: {key!r} is not a key of the recipe there")
        if isinstance(node, list) and leaf.isdigit() and int(leaf) < len(node):
            node[int(leaf)] = value
        elif isinstance(node, dict):
            node[leaf] = value
        else:
            raise BortzooError(f"{where}: cannot set {dotted!r} in the recipe")
    return config
