"""The files that ship inside the package besides code: recipes, card templates and assets, found one way in a
checkout, an editable install and an installed wheel.

The repository keeps `recipes/` and `model_cards/` at its top (the product's layout). `bortzoo/recipes` and
`bortzoo/model_cards` are symbolic links to them, so setuptools packages their files as package data of
`bortzoo` (pyproject.toml), sdists and wheels hold real copies, and an editable install reads the checkout's
own files (no reinstall when a recipe is added). A checkout whose git made no links (core.symlinks=false)
still works: the folders are then read from the checkout's top.

A recipe is named by its path under `recipes/` without `.yaml` (`finetune/glue/sst2-bort-tiny`); every verb's
`--config` takes such a name as well as a path, and a path that exists wins (`config_args`). Recipes name the
package's files relative to the project root (`tokenizer: bortzoo/assets/tiny-tokenizer`) and other recipes as
`recipes/...yaml`; `project_path` and `resolve_recipe` find those from any folder.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Optional

from bortzoo.errors import BortzooError

PACKAGE = Path(__file__).resolve().parent
# The folder that holds the package: the repository in a checkout, site-packages in an install. Recipes name the
# package's files relative to it (bortzoo/assets/...).
PROJECT_ROOT = PACKAGE.parent
ASSETS = PACKAGE / "assets"  # the tiny corpus, tokenizer and task fixtures the project generates
RECIPES = "recipes"
MODEL_CARDS = "model_cards"
RECIPE_SUFFIXES = (".yaml", ".yml")


def packaged_dir(name: str) -> Path:
    """The packaged folder `name` (`recipes`, `model_cards`) on disk."""
    packaged = resources.files("bortzoo").joinpath(name)
    if packaged.is_dir():
        return Path(str(packaged)).resolve()
    checkout = PROJECT_ROOT / name  # a checkout without the link (git with core.symlinks=false)
    if checkout.is_dir():
        return checkout.resolve()
    raise BortzooError(f"bortzoo has no {name}/ folder beside its code ({PACKAGE}): the install is incomplete; "
                       "reinstall bortzoo")


# -- card templates ------------------------------------------------------------------------------------------
def card_template(kind: str) -> Path:
    """The card template of a `kind` of run (`model_cards/<kind>.md`: task, pretrained, candidate)."""
    folder = packaged_dir(MODEL_CARDS)
    path = folder / f"{kind}.md"
    if not path.is_file():
        kinds = sorted(p.stem for p in folder.glob("*.md"))
        raise BortzooError(f"no card template for a {kind!r} run ({MODEL_CARDS}/{kind}.md); there are {kinds}")
    return path


# -- recipes -------------------------------------------------------------------------------------------------
def recipes_dir() -> Path:
    return packaged_dir(RECIPES)


def recipe_names() -> list[str]:
    """Every packaged recipe's name: its path under recipes/ without the suffix, sorted."""
    root = recipes_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*")
                  if p.suffix in RECIPE_SUFFIXES and p.is_file())


def _as_name(value: str) -> str:
    """`recipes/finetune/glue/sst2-bort-tiny.yaml` → `finetune/glue/sst2-bort-tiny` (the form names take)."""
    text = value.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    if text.startswith(RECIPES + "/"):
        text = text[len(RECIPES) + 1:]
    for suffix in RECIPE_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def recipe_file(name: str) -> Optional[Path]:
    """The packaged recipe `name` (`finetune/glue/sst2-bort-tiny`; `.yaml` and a leading `recipes/` accepted),
    or None."""
    key = _as_name(name)
    if not key or key.startswith("/") or ".." in key.split("/"):
        return None
    root = recipes_dir()
    for suffix in RECIPE_SUFFIXES:
        path = root / (key + suffix)
        if path.is_file():
            return path
    return None


def recipe_description(path: Path) -> str:
    """The first comment line of a recipe (each recipe starts with a `# ...` line saying what it does)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if stripped:
            break
    return ""


def close_recipes(value: str, n: int = 5) -> list[str]:
    """Packaged recipe names close to `value` (by the whole name, then by the last part)."""
    names, key = recipe_names(), _as_name(value)
    close = difflib.get_close_matches(key, names, n=n, cutoff=0.6)
    if len(close) < n:
        by_stem: dict[str, list[str]] = {}
        for name in names:
            by_stem.setdefault(name.rsplit("/", 1)[-1], []).append(name)
        for stem in difflib.get_close_matches(key.rsplit("/", 1)[-1], list(by_stem), n=n, cutoff=0.6):
            close += [name for name in by_stem[stem] if name not in close]
    return close[:n]


def unknown_recipe(value: str, what: str, files: bool = True) -> BortzooError:
    """The error for `value`, which names no recipe: `what` (`--config`) and the close matches."""
    close = close_recipes(value)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    kind = "neither a file nor a packaged recipe" if files else "not a packaged recipe nor a folder of them"
    return BortzooError(f"{what} {value!r} is {kind}{hint} (`bortzoo recipes` lists the packaged ones)")


def resolve_recipe(value: str, what: str = "--config") -> str:
    """The file to read for `value`: the path itself when it exists (a path wins), else the packaged recipe of
    that name (`finetune/glue/sst2-bort-tiny`, `....yaml`, or `recipes/....yaml` from outside the repository)."""
    if Path(value).expanduser().exists():
        return value
    found = recipe_file(value)
    if found is None:
        raise unknown_recipe(value, what)
    return str(found)


def _inline_config(value: str) -> bool:
    """jsonargparse's --config also takes the YAML itself (`--config '{trainer: {max_epochs: 1}}'`)."""
    text = value.strip()
    return "\n" in text or text.startswith(("{", "[")) or ": " in text


def config_args(args: list[str]) -> list[str]:
    """`args` with each `--config VALUE` (or `--config=VALUE`) that names a packaged recipe replaced by its file;
    a value that is neither a file nor a recipe stops here with close matches."""
    out: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--config" and index + 1 < len(args) and not args[index + 1].startswith("-"):
            value = args[index + 1]
            out += [token, value if _inline_config(value) else resolve_recipe(value)]
            index += 2
            continue
        if token.startswith("--config=") and not _inline_config(token[len("--config="):]):
            token = "--config=" + resolve_recipe(token[len("--config="):])
        out.append(token)
        index += 1
    return out


# -- files that recipes name --------------------------------------------------------------------------------------
def project_path(ref: str | os.PathLike) -> str:
    """A path a recipe names relative to the project root, found from any folder: `ref` itself when it exists
    from here (or is absolute, or names no package file), else the package's own copy (`bortzoo/assets/...` of
    a tiny recipe run outside the repository, or from an installed wheel)."""
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if not text.strip() or path.is_absolute() or path.exists():
        return text
    parts = Path(text.replace("\\", "/")).parts
    if len(parts) > 1 and parts[0] == PACKAGE.name and ".." not in parts:
        candidate = PACKAGE.joinpath(*parts[1:])
        if candidate.exists():
            return str(candidate)
    return text


# -- the verb ------------------------------------------------------------------------------------------------
def recipes(name: Optional[str] = None) -> None:
    """List the recipes that ship with bortzoo, or print one recipe's YAML (to copy into a file and edit).

    Args:
        name: A recipe's name, its path under recipes/ without .yaml (`bortzoo recipes finetune/glue/sst2-bort-tiny`
            prints it), or a folder of recipes to list (`bortzoo recipes agora`); none: every recipe, each with the
            first line of its header comment. Every verb's --config takes these names as well as paths, from any
            folder (a path that exists wins): `bortzoo fit --config finetune/glue/sst2-bort-tiny`.
    """
    import sys

    if name:
        found = recipe_file(name)
        if found is not None:
            sys.stdout.write(found.read_text(encoding="utf-8"))
            return
    names = recipe_names()
    if name:
        folder = _as_name(name).strip("/") + "/"
        names = [n for n in names if n.startswith(folder)]
        if not names:
            raise unknown_recipe(name, "recipe", files=False)
    width = max(len(n) for n in names)
    for item in names:
        description = recipe_description(recipe_file(item))
        print(f"{item:<{width}}  {description}".rstrip())
    print(f"\n{len(names)} recipes; print one with `bortzoo recipes NAME`, run one with `bortzoo fit --config NAME` "
          "(agora and extract recipes: `bortzoo agora|extract --config NAME`)")
