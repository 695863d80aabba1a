"""Every command that `bortzoo --help`, the README and the recipes print works: a newcomer copies them.

Where commands are found
  (a) `bortzoo --help` (USAGE in bortzoo/cli.py), and every `bortzoo VERB --help` (`test_verb_help_commands`);
  (b) README.md and every docs/*.md page: fenced code blocks (not ```python or ```text ones) and inline code spans. The
      README's Layout block lists files, not commands: its bench/ entries must exist;
  (c) the comment lines of recipes/**.yaml;
  (d) the header comments of `run`, and the module docstrings of demo/app.py and of the verbs' modules.
A command starts with `bortzoo `, `./run`, `python -m bortzoo`, `python -m pytest`, `python demo/app.py` or
`[python ]bench/NAME.py`, after leading `VAR=value` assignments and `.venv/bin/` are dropped. In running text
(help lines, comments) it ends at two spaces, a bracket `(` `)`, `;` or the line's end. The shell loop of
recipes/extract/bort.yaml is read as its first iteration.

Normal form
  `./run demo|bench ARGS` is `bortzoo demo|bench ARGS`, `./run bortzoo ARGS` is `bortzoo ARGS`, `./run test ARGS` is
  pytest ARGS (each job must be one of `run`'s); `python demo/app.py ARGS` is `bortzoo demo ARGS`. `--config NAME`
  of a packaged recipe (`bortzoo recipes`) is `--config recipes/NAME.yaml`, the same command. A trailing
  `# comment` and `...` are dropped; a command with optional arguments (`[--seeds 0,1,2]`) is checked without
  them and with them. argparse's own `usage:` lines of a verb's --help are synopses.
  Placeholders: an upper-case part of a recipe path (`recipes/agora/TASK-bort-tiny.yaml`) expands to every
  recipe it matches (at least one), `VERB` to every verb; any other upper-case word (`RECIPE.yaml`, `RUN_DIR`,
  `C.ckpt`, `ORG/NAME`, ...) takes its stand-in from STAND_INS. A placeholder without a rule fails the test.
  The same command found in several places is checked once (all its places are named on failure).

What happens to a command (the first rule that applies)
  1. MENTION (the verb, job, script or module exists and knows every option named): a synopsis (`[options]`,
     `ARGS`), a verb named in running text with options but no values (`bortzoo agora`,
     `bortzoo publish --optimized`), and `python -m bortzoo.agora.trials FOLDER` (what parallel Agora trials
     launch, not a user command).
  2. RUN for real, in this process, from the repository root (recipes name their files relative to it):
     - `--help` of bortzoo and of every verb (exit 0, a usage line, no words after --help, which argparse would
       ignore), `bortzoo zoo list`, `python -m bortzoo.zoo` (seconds, offline, writes nothing);
     - a Trainer verb or `agora` on a *-tiny recipe, named by --help, the README or `run` (what a newcomer
       copies). It runs in a temporary copy of the recipe (`recipe_copy`: everything under runs/ moved into
       tmp_path) scaled down by SHORTEN to seconds (one epoch of two batches; four steps; one Agora iteration of
       two sets), on one torch thread: the test checks that the command works, not what it learns (the README's
       numbers come from full runs). Each run must write the outputs its recipe declares. Each distinct command
       runs once per module. Today: `bortzoo fit --config recipes/pretrain/bort-mlm-tiny.yaml`,
       `bortzoo fit --config recipes/finetune/glue/sst2-bort-tiny.yaml --seeds 0,1,2` (--help) and
       `bortzoo agora --config recipes/agora/rte-bort-tiny.yaml` (README), plus the tiny siblings of rule 3.
  3. PARSED for real, everything else: GPU recipes (a GPU, Hub weights, hours), `./run demo` (serves until
     stopped), `./run bench` and bench/ scripts (minutes), `bortzoo publish ... --repo-id` (the Hub), template
     expansions, and tiny recipes named only by their own header (45 tiny recipes of 6-25 s each would take
     minutes; tests/test_recipes.py builds every one, test_finetune & co. run them):
     - Trainer verbs through `bortzoo.recipe.lightning_cli(args, parse_only=True)` with exactly the command's
       arguments (`--seeds` taken off first, as `bortzoo fit` does; one parser per process, reused);
     - the other verbs through `bortzoo.cli.main(args)` with jsonargparse's `auto_cli` made parse-only: the
       verb's own parser after the CLI's own rewriting (`--repo-id`, bare flags, lists);
     - `./run test` and pytest: the paths exist; bench/ scripts and `python -m bortzoo.X`: their argparse parser;
     - every path named exists in the repository or is an output of an earlier step: an output that the recipe
       of another command declares for that verb (ModelCheckpoint files, default_root_dir, the export and
       submission folders, Agora's and the search's `out`), RUN_DIR/hub of `bortzoo publish RUN_DIR`, a step
       of EARLIER_STEPS, or a file of USER_FILES. When the command is one a newcomer copies (not a recipe
       header or a template) and the producing Trainer or Agora command has a -tiny sibling, that sibling runs
       (SHORTEN) and the same path in its outputs must exist. Publish, export and the search are not run
       for this (the Hub or BERT-large's latency; the search needs the tiny teacher first): declared only.
       Today that runs `fit` of glue/sst2-bort-tiny, glue/rte-bort-tiny and superglue/rte-bort-tiny, and
       `predict` of superglue/rte-bort-tiny (for the README's test, predict, publish and submission check).
  Unknown options, missing paths and commands that fit no rule fail; `test_the_checks_catch_mistakes` shows that
  each kind of mistake is caught.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import yaml
from conftest import REPO, load_bench_script, recipe_copy

README = REPO / "README.md"
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))  # one page per job; read like the README
RUN_SCRIPT = REPO / "run"
DOCSTRING_FILES = ["demo/app.py", "bortzoo/demo/app.py", "bortzoo/serve/bench.py", "bortzoo/export.py",
                   "bortzoo/extract/search.py", "bortzoo/extract/report.py", "bortzoo/agora/loop.py",
                   "bortzoo/publish/upload.py", "bortzoo/zoo.py"]

TRAINER_VERBS = ("fit", "validate", "test", "predict")
RECIPE_VERBS = (*TRAINER_VERBS, "agora", "extract")
# Sources a newcomer copies from (recipe headers and template expansions are not among them).
COPIED = {"help", "verb-help", "readme-block", "readme-inline", "run", "docstring"}
INLINE = {"readme-inline", "inline"}

# Upper-case words that are not recipe-path parts: their stand-ins, per context (verb, "extract report",
# script or module) or for any context (None).
STAND_INS: dict[str, dict[Optional[str], str]] = {
    "RECIPE.yaml": {None: "recipes/finetune/glue/rte-bort.yaml"},
    "R.yaml": {"extract": "recipes/extract/bort.yaml", "fit": "recipes/pretrain/bort.yaml"},
    "C.ckpt": {None: "runs/pretrain/bort-mlm-tiny/checkpoints/last.ckpt"},  # `bortzoo fit` of --help writes it
    "DIR": {"extract report": "runs/extract/bort", "export": "runs/pretrain/bort-mlm-tiny/transformers"},
    "T": {None: "bortzoo/assets/tiny-tokenizer"},
    "RUN_DIR": {None: "runs/finetune/glue/rte-bort"},
    "OUT": {"publish --candidate": "runs/extract/bort", None: "runs/agora/rte-bort"},
    "ORG/NAME": {None: "you/bort-rte"},
    "ORG/bort-rte": {None: "you/bort-rte"},
    "ORG/cand": {None: "you/cand"},
    "D,A,H,I": {None: "4,8,1024,768"},
    "k/N": {None: "1/2"},
    "TASK=REF": {None: "sst2=bert-large-sst2"},
    "TASK=FOLDER": {None: "sst2=bortzoo/assets/tiny-tasks/glue"},
    "FOLDER|ZIP": {None: "runs/finetune/superglue/submission-bort"},
    "MODEL": {None: "bert-large-sst2"},
    "TASK": {None: "sst2"},
    "FOLDER": {"bortzoo.agora.trials": "runs/agora/rte-bort-tiny/iter-1/trials/set-000"},
}
# Steps the README implies but does not print, with what they write.
EARLIER_STEPS = {
    # the guard and the demo read the published SST-2 fine-tune; the README publishes only RTE's
    "bortzoo publish runs/finetune/glue/sst2-bort --dry-run": "runs/finetune/glue/sst2-bort/hub",
}
# Files the user writes; the test writes them into tmp_path with the keys the README gives.
USER_FILES = {
    "demo.yaml": {"bort": {"sst2": "runs/finetune/glue/sst2-bort/hub"},
                  "data": {"sst2": "bortzoo/assets/tiny-tasks/glue"}},
}
# Options whose value is a path the command writes, so it need not exist.
WRITES = {("export", "--out"), ("publish", "--out"), ("bench", "--out"), ("script", "--out"), ("script", "--csv")}
PATH_LIKE = re.compile(
    r"^(?:recipes|runs|bortzoo|bench|tests|tests_live|demo|docs|model_cards)(?:/|$)|\.(?:ya?ml|ckpt)$")
PLACEHOLDER = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Z_]*(?![a-z0-9])")


# -- finding commands ------------------------------------------------------------------------------------------
ENV = r"(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:\.venv/bin/)?"
OTHERS = r"\./run\b|python\s+-m\s+(?:bortzoo|pytest)\b|python\s+demo/app\.py\b|(?:python\s+)?bench/\w+\.py\b"


def _verbs_pattern() -> str:
    from bortzoo.cli import VERBS

    return r"(?=(?:" + "|".join(["VERB", "ARGS", "--help", "-h", *TRAINER_VERBS, *VERBS]) + r")(?![\w-]))"


# A code block line or a code span: a command from its first character, anything after `bortzoo `.
START = re.compile(r"(?<=^)" + ENV + r"(?:bortzoo\s+(?=[\w-])|" + OTHERS + ")")
# Running text: `bortzoo` at a command's place (line start, after two spaces, `(`, `: `) followed by a verb, so that
# prose ("any bortzoo command", "the bortzoo demo as a script") is not a command.
START_TEXT = re.compile(r"(?:(?<=^)|(?<=\s\s)|(?<=[(:]\s)|(?<=\())" + ENV + r"bortzoo\s+" + _verbs_pattern()
                        + r"|(?:(?<=^)|(?<=[\s(:]))" + ENV + "(?:" + OTHERS + ")")
END = re.compile(r"\s{2,}|[();]|\s#\s|$")
SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Found:
    text: str
    where: str
    kind: str  # help, verb-help, readme-block, readme-inline, inline, recipe, run, docstring, template, explicit


def as_command(text: str) -> Optional[str]:
    """`text` if it is a command (from its start), without env assignments, `.venv/bin/` and a `# comment`."""
    text = re.sub(r"\s+#\s.*$", "", " ".join(text.split()))
    match = START.match(text)
    if not match:
        return None
    text = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)+", "", text).replace(".venv/bin/", "", 1)
    return text.rstrip(".,:;")


def unroll_loops(line: str) -> str:
    """`for i in 0 1; do X $i $((i+1)) & done; wait` → `X 0 1` (the first iteration)."""
    match = re.search(r"for (\w+) in (\S+)[^;]*;\s*do\s+(.*?)\s*[&;]?\s*done\b.*$", line)
    if not match:
        return line
    name, first, body = match.groups()
    body = re.sub(r"\$\(\(\s*" + name + r"\s*\+\s*(\d+)\s*\)\)", lambda m: str(int(first) + int(m.group(1))), body)
    return line[:match.start()] + body.replace("$" + name, first)


def scan_line(line: str, where: str, kind: str) -> list[Found]:
    """Commands in running text: backtick spans that are commands, then commands elsewhere in the line."""
    found = []
    for span in SPAN.findall(line):
        command = as_command(span)
        if command:
            found.append(Found(command, where, "inline"))
    rest, position = SPAN.sub(" ", unroll_loops(line)), 0
    while match := START_TEXT.search(rest, position):
        end = END.search(rest, match.end())
        command = as_command(rest[match.start():end.start()])
        if command:  # argparse's own usage line is a synopsis of the parser itself
            found.append(Found(command, where, "usage" if rest[:match.start()].strip() == "usage:" else kind))
        position = max(end.end(), match.end())
    return found


def scan_text(text: str, where: str, kind: str) -> list[Found]:
    found = []
    joined = " ".join(text.split())  # spans wrapped over lines (argparse wraps help text)
    for span in SPAN.findall(joined):
        command = as_command(span)
        if command:
            found.append(Found(command, where, "inline"))
    for number, line in enumerate(text.splitlines(), 1):
        found += [f for f in scan_line(SPAN.sub(" ", line), f"{where}:{number}", kind)]
    return found


def markdown_commands(page: Path) -> list[Found]:
    name = str(page.relative_to(REPO))
    found, prose = [], []
    lang, in_block, heading = "", False, ""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block, lang = (not in_block), stripped[3:].strip()
            prose.append((number, ""))
            continue
        if not in_block:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            prose.append((number, line))
        elif lang not in ("python", "text") and stripped:  # ```text blocks show output, not commands
            if heading == "Layout" and page == README:
                if stripped.startswith("bench/"):
                    found.append(Found(stripped.split()[0], f"{name}:{number}", "file"))
                continue
            command = as_command(stripped)
            if command:
                found.append(Found(command, f"{name}:{number}", "readme-block"))
    text = "\n".join(line for _, line in prose)
    starts = [0]
    for _, line in prose:
        starts.append(starts[-1] + len(line) + 1)
    for match in SPAN.finditer(text):
        command = as_command(match.group(1))
        if command:
            line = prose[max(i for i, s in enumerate(starts[:-1]) if s <= match.start())][0]
            found.append(Found(command, f"{name}:{line}", "readme-inline"))
    return found


def readme_commands() -> list[Found]:
    """The README's commands and those of every docs/ page (a newcomer copies from both)."""
    return [found for page in (README, *DOC_PAGES) for found in markdown_commands(page)]


def recipe_commands() -> list[Found]:
    found = []
    for recipe in sorted((REPO / "recipes").rglob("*.yaml")):
        for number, line in enumerate(recipe.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                text = line.lstrip().lstrip("#").strip()
                where = f"{recipe.relative_to(REPO)}:{number}"
                command = as_command(unroll_loops(text))
                found += [Found(command, where, "recipe")] if command else []
                found += [Found(c, where, "inline") for c in map(as_command, SPAN.findall(text)) if c]
    return found


def script_commands() -> list[Found]:
    """`run`'s header comments and the module docstrings of demo/app.py and the verbs' modules."""
    import ast

    found = []
    for number, line in enumerate(RUN_SCRIPT.read_text().splitlines(), 1):
        if line.startswith("#") and not line.startswith("#!"):
            found += scan_line(line.lstrip("#"), f"run:{number}", "run")
    for name in DOCSTRING_FILES:
        docstring = ast.get_docstring(ast.parse((REPO / name).read_text())) or ""
        found += scan_text(docstring, f"{name} (docstring)", "docstring")
    return found


def help_output(args: list[str]) -> str:
    """stdout of `bortzoo ARGS` (a --help), run in this process."""
    from bortzoo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit_:
            assert exit_.code in (0, None), f"bortzoo {' '.join(args)} exited {exit_.code}: {err.getvalue()[-2000:]}"
    assert "usage:" in out.getvalue(), out.getvalue()[:500]
    return out.getvalue()


def help_commands() -> list[Found]:
    return scan_text(help_output(["--help"]), "bortzoo --help", "help")


# -- normal form -----------------------------------------------------------------------------------------------
def run_jobs() -> set[str]:
    return set(re.findall(r"^\s+(\w+)\)\s", RUN_SCRIPT.read_text(), flags=re.M))


def all_verbs() -> list[str]:
    from bortzoo.cli import VERBS

    return [*TRAINER_VERBS, *VERBS]


@dataclass
class Command:
    kind: str  # bortzoo, pytest, module, script, synopsis, file
    argv: tuple
    found: list = field(default_factory=list)  # Found
    needs: set = field(default_factory=set)  # files the original text names outside argv (demo/app.py, run)
    error: Optional[str] = None  # why it fits no rule (kind "error")
    outputs: Optional[tuple] = None  # declared_outputs, cached

    @property
    def text(self) -> str:
        prefix = {"bortzoo": "bortzoo", "pytest": "python -m pytest", "module": "python -m"}.get(self.kind, "")
        return " ".join([prefix, *map(shlex.quote, self.argv)]).strip()

    @property
    def key(self):
        return self.kind, self.argv

    @property
    def kinds(self) -> set[str]:
        return {f.kind for f in self.found}

    @property
    def verb(self) -> Optional[str]:
        return self.argv[0] if self.kind == "bortzoo" and self.argv else None

    @property
    def context(self) -> Optional[str]:
        if self.kind == "bortzoo":
            return " ".join(self.argv[:2]) if self.argv[:2] == ("extract", "report") else self.verb
        return self.argv[0] if self.argv else None

    def option(self, name: str) -> Optional[str]:
        args = list(self.argv)
        for index, token in enumerate(args):
            if token == name and index + 1 < len(args):
                return args[index + 1]
            if token.startswith(name + "="):
                return token.split("=", 1)[1]
        return None

    @property
    def config(self) -> Optional[str]:
        return self.option("--config") if self.verb in RECIPE_VERBS else None

    def where(self) -> str:
        return "; ".join(sorted({f"{f.where} ({f.kind}): {f.text}" for f in self.found}))


class Unclassifiable(Exception):
    pass


def recipe_paths(argv: list[str]) -> list[str]:
    """`--config NAME` of a packaged recipe (not a path here) as `--config recipes/NAME.yaml`."""
    from bortzoo.resources import recipe_file, recipes_dir

    argv = list(argv)
    for index, token in enumerate(argv[:-1]):
        value = argv[index + 1]
        if token == "--config" and not PLACEHOLDER.search(value) and not (REPO / value).exists():
            found = recipe_file(value)
            if found is not None:
                argv[index + 1] = "recipes/" + found.relative_to(recipes_dir()).as_posix()
    return argv


def normal_form(text: str) -> tuple[str, list[str], set[str]]:
    """(kind, argv, files named outside argv) of one command text."""
    if re.search(r"\[options\]|\bARGS\b", text):
        return "synopsis", text.split(), set()
    text = re.sub(r"\[(?=-)", "", text)
    text = re.sub(r"(?<=\S)\](?=\s|$)", "", text)
    tokens = [t for t in shlex.split(text) if t not in ("...", "…")]
    head, rest = tokens[0], tokens[1:]
    if head == "bortzoo":
        return "bortzoo", recipe_paths(rest), set()
    if head == "./run":
        job, args = (rest[0], rest[1:]) if rest else ("demo", [])
        if job not in run_jobs():
            raise Unclassifiable(f"`./run {job}`: `run` has no job {job!r} (it has {sorted(run_jobs())})")
        if job == "test":
            return "pytest", args, {"run"}
        return "bortzoo", recipe_paths(([job] if job != "bortzoo" else []) + args), {"run"}
    if head == "python" and rest[:1] == ["-m"] and len(rest) > 1:
        return ("pytest", rest[2:], set()) if rest[1] == "pytest" else ("module", rest[1:], set())
    if head == "python" and rest[:1] == ["demo/app.py"]:
        return "bortzoo", ["demo", *rest[1:]], {"demo/app.py"}
    if head == "python" and rest and rest[0].startswith("bench/"):
        return "script", rest, set()
    if head.startswith("bench/"):
        return "script", tokens, set()
    raise Unclassifiable(f"no rule for {text!r}")


def expand(kind: str, argv: list[str]) -> list[tuple[list[str], bool]]:
    """Placeholders replaced: [(argv, is_template)]. Recipe-path parts and VERB expand; others take stand-ins."""
    if kind in ("synopsis", "file"):
        return [(argv, False)]
    context = (" ".join(argv[:2]) if argv[:2] == ["extract", "report"] else argv[0]) if argv else None
    if kind == "script":
        context = "script"
    elif argv[:1] == ["publish"] and "--candidate" in argv:
        context = "publish --candidate"  # the run folder is a search's
    options: list[list[str]] = []
    template = False
    for index, token in enumerate(argv):
        placeholder = PLACEHOLDER.search(token) or token == "k/N"
        if kind == "script" and index == 0 or not placeholder or token.startswith("--"):
            options.append([token])
        elif token == "VERB":
            options.append(all_verbs())
            template = True
        elif token.startswith("recipes/"):
            pattern = PLACEHOLDER.sub("*", token)
            matches = sorted(str(Path(p).relative_to(REPO)) for p in glob.glob(str(REPO / pattern)))
            if not matches:
                raise Unclassifiable(f"{token} matches no recipe")
            options.append(matches)
            template = True
        elif token in STAND_INS and (context in STAND_INS[token] or None in STAND_INS[token]):
            table = STAND_INS[token]
            options.append([table.get(context, table.get(None))])
            template = True
        else:
            raise Unclassifiable(f"placeholder {token!r} (in `{' '.join(argv)}`) has no stand-in: add it to STAND_INS")
    combos: list[list[str]] = [[]]
    for choices in options:
        combos = [c + [x] for c in combos for x in choices]
    return [(c, template) for c in combos]


def collect(found: list[Found]) -> dict:
    """Found texts → distinct Commands (by normal form), each with every place it was found."""
    commands: dict = {}
    for item in found:
        # `[--option value]` is optional: the command without it and with it
        variants = dict.fromkeys([re.sub(r"\s*\[-[^\]]*\]", "", item.text), item.text])
        for text in variants:
            if item.kind in ("file", "usage"):
                kind, needs = ("file", set()) if item.kind == "file" else ("synopsis", set())
                expanded = [(text.split(), False)]
            else:
                try:
                    kind, argv, needs = normal_form(text)
                    expanded = expand(kind, argv)
                except Unclassifiable as err:
                    command = commands.setdefault(("error", (text,)), Command("error", (text,), error=str(err)))
                    command.found.append(item)
                    continue
            for args, template in expanded:
                source = Found(item.text, item.where, "template" if template else item.kind)
                command = commands.setdefault((kind, tuple(args)), Command(kind, tuple(args)))
                command.found.append(source)
                command.needs |= needs
    return commands


def all_found() -> list[Found]:
    found = help_commands() + readme_commands() + recipe_commands() + script_commands()
    found += [Found(text, "tests/test_commands.py EARLIER_STEPS", "explicit") for text in EARLIER_STEPS]
    return found


# -- classification --------------------------------------------------------------------------------------------
def is_tiny(recipe: Optional[str]) -> bool:
    return bool(recipe) and Path(recipe).stem.endswith("-tiny")


def classify(command: Command) -> str:
    argv = command.argv
    if command.kind == "error":
        raise Unclassifiable(command.error)
    if command.kind in ("synopsis", "file"):
        return "mention" if command.kind == "synopsis" else "file"
    if command.kind == "bortzoo" and ("--help" in argv or "-h" in argv):
        return "run"
    if command.kind == "bortzoo" and argv[:1] == ("zoo",) or command.kind == "module" and argv == ("bortzoo.zoo",):
        return "run"
    if command.kind == "module" and argv[:1] == ("bortzoo.agora.trials",):
        return "mention"
    if command.kind == "bortzoo" and command.kinds <= INLINE and all(a.startswith("--") for a in argv[1:]):
        return "mention"
    if command.verb in (*TRAINER_VERBS, "agora") and is_tiny(command.config) and command.kinds & COPIED:
        return "run"
    if command.kind in ("bortzoo", "pytest", "module", "script"):
        return "parse"
    raise Unclassifiable(command.text)


# -- outputs: what a command writes, and its tiny sibling ------------------------------------------------------
@functools.lru_cache(maxsize=None)
def recipe_yaml(path: str) -> dict:
    """The recipe's YAML (cached: do not change it)."""
    return yaml.safe_load((REPO / path).read_text()) or {}


def declared_outputs(command: Command) -> tuple[list[str], list[str]]:
    """(files, folders) that `command` writes, as its recipe or options declare them (repository-relative)."""
    files, folders = [], []
    verb = command.verb
    if verb in TRAINER_VERBS and command.config and (REPO / command.config).is_file():
        trainer = recipe_yaml(command.config).get("trainer") or {}
        root = trainer.get("default_root_dir")
        folders += [root] if root and verb == "fit" else []  # the run folder: results.json, config, logs
        if "--seeds" in command.argv:
            return ([f"{root}/seeds.json"] if root else []), folders
        for callback in trainer.get("callbacks") or []:
            name, args = callback.get("class_path", ""), callback.get("init_args") or {}
            if name.endswith("ModelCheckpoint") and verb == "fit":
                files += [f"{args['dirpath']}/{args['filename']}.ckpt"] if args.get("filename") else []
                files += [f"{args['dirpath']}/last.ckpt"] if args.get("save_last") else []
            elif name.endswith("ExportTransformers") and verb == "fit":
                folders.append(args["dirpath"])
            elif name.endswith("SubmissionWriter") and verb == "predict":
                folders.append(args["dirpath"])
    elif verb == "agora" and command.config:
        out = recipe_yaml(command.config)["out"]
        folders.append(out)
        files.append(f"{out}/checkpoints/best.ckpt")
    elif verb == "extract" and command.argv[1:2] != ("report",) and command.config:
        folders.append(recipe_yaml(command.config).get("out", "runs/extract/bort"))
    elif verb == "publish":
        run_dir = next((a for a in command.argv[1:] if not a.startswith("--")), None)
        folders += [command.option("--out") or f"{run_dir}/hub"] if run_dir else []
    elif verb == "export" and command.option("--out"):
        folders.append(command.option("--out"))
    return files, folders


def writes(command: Command, path: str) -> int:
    """How specifically `command` writes `path`: the length of its output that holds it (0: it does not)."""
    if command.outputs is None:
        command.outputs = declared_outputs(command)
    files, folders = command.outputs
    if path in files:
        return len(path) + 1
    if path.endswith(".ckpt"):  # checkpoints are named by the recipe: the exact file, not any file in a folder
        return 0
    return max([len(f) for f in folders if path == f or path.startswith(f.rstrip("/") + "/")], default=0)


def aligned_paths(gpu: object, tiny: object, pairs: list) -> list:
    """(GPU value, tiny value) pairs of the runs/ strings at the same place of two recipes."""
    if isinstance(gpu, dict) and isinstance(tiny, dict):
        for key in gpu.keys() & tiny.keys():
            aligned_paths(gpu[key], tiny[key], pairs)
    elif isinstance(gpu, list) and isinstance(tiny, list):
        for a, b in zip(gpu, tiny):
            aligned_paths(a, b, pairs)
    elif isinstance(gpu, str) and isinstance(tiny, str) and gpu.startswith("runs/") and tiny.startswith("runs/"):
        pairs.append((gpu.rstrip("/"), tiny.rstrip("/")))
    return pairs


def sibling_path(gpu_recipe: str, path: str) -> str:
    """`path`, which the GPU recipe writes, in the outputs of its -tiny sibling."""
    tiny_recipe = gpu_recipe[: -len(".yaml")] + "-tiny.yaml"
    pairs = aligned_paths(recipe_yaml(gpu_recipe), recipe_yaml(tiny_recipe), [])
    for gpu, tiny in sorted(pairs, key=lambda p: -len(p[0])):
        if path == gpu or path.startswith(gpu + "/"):
            return tiny + path[len(gpu):]
    raise AssertionError(f"{tiny_recipe} writes no counterpart of {path} (of {gpu_recipe})")


def shorten(recipe: str, verb: str) -> dict:
    """SHORTEN: overrides that make a tiny recipe take seconds (the test checks the command, not the model)."""
    config = recipe_yaml(recipe)
    if "trainer" in config:
        overrides = {"trainer.enable_progress_bar": False, "trainer.enable_model_summary": False}
        if verb == "fit" and (config["trainer"].get("max_steps") or -1) > 0:
            overrides.update({"trainer.max_steps": 4, "trainer.val_check_interval": 2, "trainer.limit_val_batches": 1})
        elif verb == "fit":
            overrides.update({"trainer.max_epochs": 1, "trainer.limit_train_batches": 2,
                              "trainer.limit_val_batches": 2})
        return overrides
    if "finetune" in config:  # Agora: one iteration of two sets, two batches per trial and for the weak model
        fast = {"trainer.max_epochs": 1, "trainer.limit_train_batches": 2, "trainer.enable_progress_bar": False,
                "trainer.enable_model_summary": False}
        overrides = {"finetune_overrides": {**(config.get("finetune_overrides") or {}), **fast},
                     "weak_overrides": {**(config.get("weak_overrides") or {}), **fast}, "max_iterations": 1}
        if config.get("sets"):
            overrides["sets"] = config["sets"][:2]
        return overrides
    raise AssertionError(f"no SHORTEN rule for {recipe}")


@contextlib.contextmanager
def one_thread():
    """Tiny models gain nothing from more threads, and on a shared 2-core machine spinning threads cost a lot."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def in_repo():
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        yield
    finally:
        os.chdir(cwd)


# -- the workspace: runs, parses and productions shared by the whole module -----------------------------------
class Workspace:
    def __init__(self, root: Path, commands: dict):
        self.root = root
        self.commands = commands
        self.ran: dict = {}
        self.checked: dict = {}
        self.trainer_parser = None
        self.parsed: dict = {}
        self.helps: dict = {}

    # running
    def run(self, command: Command) -> None:
        """Run a Trainer/Agora command on a tiny recipe for real (once), its runs/ outputs under self.root."""
        if command.key in self.ran:
            if isinstance(self.ran[command.key], BaseException):
                raise AssertionError(f"{command.text} failed before") from self.ran[command.key]
            return
        try:
            self._run(command)
            self.ran[command.key] = True
        except BaseException as err:
            self.ran[command.key] = err
            raise

    def _run(self, command: Command) -> None:
        from bortzoo.cli import main

        recipe = command.config
        assert recipe and (REPO / recipe).is_file(), f"{command.text}: no recipe {recipe}"
        copies = self.root / "copies" / Path(recipe).parent
        copy = recipe_copy(REPO / recipe, self.root, **shorten(recipe, command.verb))
        copies.mkdir(parents=True, exist_ok=True)
        copy = copy.rename(copies / copy.name)
        args = []
        for token in command.argv:
            if token == recipe:
                args.append(str(copy))
            elif token.startswith("runs/"):
                assert (self.root / token).exists(), f"{command.text}: {token} is not there (no earlier step wrote it)"
                args.append(str(self.root / token))
            else:
                args.append(token)
        log = io.StringIO()
        with in_repo(), one_thread(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                main(args)
            except SystemExit as exit_:
                if exit_.code not in (0, None):
                    raise AssertionError(f"`{command.text}` exited {exit_.code}:\n{log.getvalue()[-3000:]}") from None
        files, folders = declared_outputs(command)
        for path in files + folders:
            assert (self.root / path).exists(), f"`{command.text}` did not write {path} (its recipe declares it)"

    def help(self, args: tuple) -> str:
        if args not in self.helps:
            self.helps[args] = help_output(list(args))
        return self.helps[args]

    # productions
    def producers(self, path: str, reader: Command) -> list[Command]:
        """The commands that write `path` most specifically (`hub` by publish, not by fit's run folder), those
        found in the same file as `reader` first."""
        scored = [(writes(c, path), c) for c in self.commands.values() if c is not reader and c.kind == "bortzoo"]
        best = max([score for score, _ in scored], default=0)
        candidates = [c for score, c in scored if score and score == best]
        files = {f.where.split(":")[0].split(" ")[0] for f in reader.found}
        same = [c for c in candidates if {f.where.split(":")[0].split(" ")[0] for f in c.found} & files]
        return same or candidates

    def produce(self, path: str, reader: Command, copied: bool, depth: int = 0) -> None:
        """Check that an earlier step writes `path` (runs/...); for copied commands, run the step's tiny sibling."""
        assert depth < 6, f"{path}: the chain of earlier steps loops"
        producers = self.producers(path, reader)
        assert producers, (f"`{reader.text}` reads {path}, which no command writes (neither in the README, the "
                           f"recipes nor EARLIER_STEPS)")
        if not copied:
            return
        for producer in producers:
            if classify(producer) == "run":
                self.run(producer)
                assert (self.root / path).exists(), f"{producer.text} ran but did not write {path}"
                return
        for producer in producers:
            if producer.verb in (*TRAINER_VERBS, "agora") and "--seeds" not in producer.argv and producer.config \
                    and not is_tiny(producer.config) and (REPO / (producer.config[:-5] + "-tiny.yaml")).is_file():
                self.run_sibling(producer, depth)
                tiny_path = sibling_path(producer.config, path)
                assert (self.root / tiny_path).exists(), (f"the tiny sibling of `{producer.text}` did not write "
                                                          f"{tiny_path} (for {path}, read by `{reader.text}`)")
                return
        # publish, export, extract: declared only (see the module docstring)

    def run_sibling(self, producer: Command, depth: int) -> None:
        """Run the -tiny sibling of a GPU command: same verb and options, paths moved to the sibling's."""
        recipe = producer.config
        tiny_recipe = recipe[: -len(".yaml")] + "-tiny.yaml"
        args = []
        for token in producer.argv:
            if token == recipe:
                args.append(tiny_recipe)
            elif token.startswith("runs/"):
                self.produce(token, producer, copied=True, depth=depth + 1)
                args.append(sibling_path(recipe, token))
            else:
                args.append(token)
        sibling = self.commands.get(("bortzoo", tuple(args))) or Command("bortzoo", tuple(args))
        self.run(sibling)


# -- checks ----------------------------------------------------------------------------------------------------
def trainer_parse(workspace: Workspace, args: list[str]):
    """The config `lightning_cli(args, parse_only=True)` parses (the same arguments are parsed once)."""
    if tuple(args) not in workspace.parsed:
        workspace.parsed[tuple(args)] = _trainer_parse(workspace, args)
    return workspace.parsed[tuple(args)]


def _trainer_parse(workspace: Workspace, args: list[str]):
    from bortzoo.recipe import lightning_cli

    err = io.StringIO()
    with in_repo(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            if workspace.trainer_parser is None:
                cli = lightning_cli(args, parse_only=True)
                workspace.trainer_parser = cli.parser
                return cli.config
            return workspace.trainer_parser.parse_args(args)
        except SystemExit:
            raise AssertionError(f"`bortzoo {' '.join(args)}` does not parse:\n{err.getvalue()[-3000:]}") from None


def verb_parse(args: list[str]) -> None:
    """`bortzoo.cli.main(args)` with jsonargparse's auto_cli parsing only (the verb's parser, the CLI's rewriting)."""
    import jsonargparse

    from bortzoo.cli import main

    def parse_only(function, args=None, prog=None, as_positional=True, **kwargs):
        return jsonargparse.auto_parser(function, prog=prog, as_positional=as_positional).parse_args(args)

    err = io.StringIO()
    original = jsonargparse.auto_cli
    jsonargparse.auto_cli = parse_only
    try:
        with in_repo(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(list(args))
    except SystemExit:
        raise AssertionError(f"`bortzoo {' '.join(args)}` does not parse:\n{err.getvalue()[-3000:]}") from None
    finally:
        jsonargparse.auto_cli = original


class _Parsed(Exception):
    pass


def argparse_parse(main, args: list[str]):
    """Parse `args` with the argparse parser that `main` builds, stopping right after parsing."""
    import argparse
    import inspect

    if "parse_args" not in inspect.getsource(main):  # it would run for real
        raise Unclassifiable(f"{main.__module__}.main parses no arguments with argparse: add a rule for it")

    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    err = io.StringIO()
    argparse.ArgumentParser.parse_args = parse_args
    try:
        with in_repo(), contextlib.redirect_stderr(err):
            main(list(args))
    except _Parsed as parsed:
        return parsed.args[0]
    except SystemExit:
        raise AssertionError(f"{args} does not parse:\n{err.getvalue()[-2000:]}") from None
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{main} did not parse its arguments")


def verb_options(verb: str, sub: Optional[str] = None) -> set[str]:
    import jsonargparse

    from bortzoo.cli import SUBVERBS, VERBS, _underscored

    function = SUBVERBS[verb][sub]() if sub else VERBS[verb][0]()
    parser = jsonargparse.auto_parser(function)
    return {_underscored(o) for action in parser._actions for o in action.option_strings}


def path_tokens(command: Command) -> list[str]:
    """The repository paths `command` reads (values of KEY=PATH too; not the paths it writes)."""
    paths, previous = [], None
    context = "script" if command.kind == "script" else command.verb
    for index, token in enumerate(command.argv):
        if command.kind == "module" and index == 0 or command.kind == "script" and index == 0:
            previous = token
            continue
        if (context, previous) in WRITES or token.startswith("--"):
            previous = token
            continue
        key_value = re.match(r"^[\w-]+=(.*)$", token)  # TASK=PATH
        value = key_value.group(1) if key_value else token
        for part in value.strip("[]").split(","):
            if PATH_LIKE.search(part):
                paths.append(part)
        previous = token
    return paths


def check_paths(workspace: Workspace, command: Command, copied: bool) -> dict:
    """Every path exists, is a USER_FILES file (→ its tmp copy) or is written by an earlier step."""
    replace = {}
    for path in [*path_tokens(command), *command.needs]:
        if path in USER_FILES:
            target = workspace.root / "user" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(yaml.safe_dump(USER_FILES[path]))
            replace[path] = str(target)
            for value in yaml.safe_dump(USER_FILES[path]).split():
                if PATH_LIKE.search(value) and not (REPO / value).exists():
                    workspace.produce(value, command, copied)
        elif (REPO / path).exists():
            continue
        elif path.startswith("runs/"):
            workspace.produce(path, command, copied)
        else:
            raise AssertionError(f"`{command.text}` names {path}, which does not exist")
    return replace


def check_mention(command: Command) -> None:
    from bortzoo.cli import SUBVERBS

    if command.kind == "synopsis":
        head = command.argv
        if head[0] == "./run":
            assert len(head) < 2 or head[1] in run_jobs() | {"ARGS", "[ARGS]"}, command.text
        elif head[0] == "bortzoo":
            assert len(head) < 2 or head[1] in (*all_verbs(), "VERB", "ARGS", "[ARGS]", "[options]"), command.text
        elif head[0] == "python":
            assert (REPO / head[1]).is_file(), command.text
        else:
            raise Unclassifiable(command.text)
        return
    if command.kind == "module":
        import importlib

        assert callable(getattr(importlib.import_module(command.argv[0]), "main", None)), command.text
        return
    verb, flags = command.argv[0], list(command.argv[1:])
    assert verb in all_verbs(), f"`{command.text}`: no verb {verb!r}"
    if flags:
        assert verb not in TRAINER_VERBS, f"no rule for options of a Trainer verb named in text: {command.text}"
        sub = flags.pop(0) if flags and verb in SUBVERBS and flags[0] in SUBVERBS[verb] else None
        known = verb_options(verb, sub)
        from bortzoo.cli import _underscored

        unknown = [f for f in flags if _underscored(f).split("=")[0] not in known]
        assert not unknown, f"`{command.text}`: bortzoo {verb} has no option {unknown}"


def check(workspace: Workspace, command: Command) -> str:
    """Check `command` by its class; returns the class."""
    if command.key in workspace.checked:
        return workspace.checked[command.key]
    kind = classify(command)
    copied = bool(command.kinds & COPIED)
    for need in command.needs:
        assert (REPO / need).is_file(), f"`{command.text}` needs {need}"
    if kind == "file":
        assert (REPO / command.argv[0]).is_file(), f"README's Layout lists {command.argv[0]}, which does not exist"
    elif kind == "mention":
        check_mention(command)
    elif kind == "run" and command.kind == "bortzoo" and ("--help" in command.argv or "-h" in command.argv):
        assert command.argv[-1] in ("--help", "-h"), f"`{command.text}`: words after --help (argparse ignores them)"
        workspace.help(command.argv)
    elif kind == "run" and command.argv[:1] == ("zoo",):
        out = io.StringIO()
        from bortzoo.cli import main

        with contextlib.redirect_stdout(out):
            main(list(command.argv))
        assert "amazon/bort" in out.getvalue(), out.getvalue()[:1000]
    elif kind == "run" and command.kind == "module":
        from bortzoo.zoo import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main()
        assert "amazon/bort" in out.getvalue()
    elif kind == "run":
        check_paths(workspace, command, copied)
        workspace.run(command)
    else:  # parse
        replace = check_paths(workspace, command, copied)
        args = [replace.get(a, a) for a in command.argv]
        if command.kind == "bortzoo" and command.verb in TRAINER_VERBS:
            from bortzoo.seed_sweep import pop_seeds

            rest, _ = pop_seeds(args[1:])
            config = trainer_parse(workspace, [args[0], *rest])
            assert config["subcommand"] == args[0]
            assert config[args[0]]["model"]["class_path"].startswith("bortzoo."), config[args[0]]["model"]
        elif command.kind == "bortzoo":
            verb_parse(args)
        elif command.kind == "pytest":
            for token in args:
                assert token.startswith("-") or ":" in token or (REPO / token.split("::")[0]).exists(), \
                    f"`{command.text}`: no {token}"
        elif command.kind == "module":
            import importlib

            module = importlib.import_module(args[0])
            assert callable(getattr(module, "main", None)), f"{args[0]} has no main()"
            argparse_parse(module.main, args[1:])
        elif command.kind == "script":
            script = args[0]
            assert (REPO / script).is_file(), f"`{command.text}`: no {script}"
            module = load_bench_script(Path(script).stem)
            if hasattr(module, "parse_args"):
                err = io.StringIO()
                with in_repo(), contextlib.redirect_stderr(err):
                    try:
                        module.parse_args(args[1:])
                    except SystemExit:
                        raise AssertionError(f"`{command.text}` does not parse:\n{err.getvalue()[-2000:]}") from None
            else:
                argparse_parse(module.main, args[1:])
        else:
            raise Unclassifiable(command.text)
    workspace.checked[command.key] = kind
    return kind


# -- tests -----------------------------------------------------------------------------------------------------
COMMANDS = collect(all_found())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("commands"), COMMANDS)


def test_every_command_found_can_be_classified():
    found = all_found()
    assert len([f for f in found if f.where.startswith("bortzoo --help")]) >= 4
    assert any("--seeds" in f.text for f in found if f.where.startswith("bortzoo --help"))
    assert len([f for f in found if f.where.startswith("README.md")]) >= 5
    assert len([f for f in found if f.where.startswith("docs/")]) >= 30
    assert {f.where.split(":")[0] for f in found if f.where.startswith("docs/")} >= {
        f"docs/{job}.md" for job in ("pretrain", "extract", "finetune", "agora", "zoo", "serving", "demo")}
    assert len([f for f in found if f.where.startswith("recipes/")]) >= 150
    for command in COMMANDS.values():
        classify(command)
    for step, output in EARLIER_STEPS.items():
        assert writes(COMMANDS[("bortzoo", tuple(shlex.split(step)[1:]))], output), (step, output)


@pytest.mark.parametrize("key", list(COMMANDS), ids=lambda k: " ".join(k[1])[:150] or k[0])
def test_command(key, workspace):
    command = COMMANDS[key]
    try:
        check(workspace, command)
    except (AssertionError, Unclassifiable) as err:
        raise AssertionError(f"{err}\n  found at: {command.where()}") from None


@pytest.mark.parametrize("args", [(v, "--help") for v in ("bench", "export", "extract", "agora", "publish", "zoo",
                                                              "demo", "recipes", *TRAINER_VERBS)]
                         + [("extract", "report", "--help"), ("zoo", "list", "--help")], ids=" ".join)
def test_verb_help_commands(args, workspace):
    """The commands a verb's --help prints (from its function's docstring) work too."""
    text = workspace.help(args)
    found = scan_text(text, f"bortzoo {' '.join(args)}", "verb-help")
    commands = collect(found)
    failures = []
    for command in commands.values():
        command = workspace.commands.get(command.key, command)
        try:
            check(workspace, command)
        except (AssertionError, Unclassifiable) as err:
            failures.append(f"{command.text}: {err}")
    assert not failures, "\n".join(failures)


# A command that is wrong in each way the checks must catch (found as `explicit`: nothing runs for them).
MISTAKES = [
    ("bortzoo fit --config recipes/finetune/glue/sst2-tiny.yaml --seeds 0,1,2", "does not exist"),
    ("bortzoo fit --config recipes/finetune/glue/sst2-bort.yaml --max_epochs 3", "does not parse"),
    ("bortzoo agora --config recipes/agora/rte-bort.yaml --paralel 4", "does not parse"),
    ("bortzoo publish runs/finetune/glue/rte-bort --repo-name you/x", "does not parse"),
    ("bortzoo tran --config recipes/pretrain/bort.yaml", "unknown verb"),
    ("bortzoo test --config recipes/finetune/glue/sst2-bort.yaml "
     "--ckpt_path runs/finetune/glue/sst2-bort/checkpoints/epoch=2.ckpt", "no command writes"),
    ("bortzoo demo --bort sst2=runs/publish/sst2", "no command writes"),
    ("./run train", "has no job"),
    ("bortzoo publish RUN --repo-id you/x", "no stand-in"),
    ("bench/cpu_latency.py --guard-tasks sst2", "does not parse"),
    ("python -m bortzoo.tasks.superglue_leaderboard runs/finetune/superglue/submission-bort --completely", "does not parse"),
    ("bortzoo publish --optimised", "no option"),
]


@pytest.mark.parametrize("text, message", MISTAKES, ids=[m[0][:80] for m in MISTAKES])
def test_the_checks_catch_mistakes(text, message, workspace):
    kind = "inline" if text == "bortzoo publish --optimised" else "explicit"
    commands = collect([Found(text, "MISTAKES", kind)])
    with pytest.raises((AssertionError, Unclassifiable), match=re.escape(message)):
        for command in commands.values():
            check(workspace, command)
