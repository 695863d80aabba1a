"""SuperGLUE leaderboard files from `bortzoo predict`, and a validator to run before uploading them.

The SuperGLUE server does not take GLUE's TSVs: it takes a zip with one JSON-lines file per leaderboard column
at its top level (`BoolQ.jsonl` ... `AX-g.jsonl`), each line one test example in the layout the SuperGLUE
baseline (jiant) writes, and it rejects a zip whose names, labels or ids are off only after the upload; it
allows few uploads per month. So the files are written here from the task specs (label strings, board names)
and `validate_submission` checks a folder, a zip or one file the way the server will:

- BoolQ, WiC: ``{"idx": 12, "label": "true"}`` (booleans as lower-case strings);
- WSC: ``{"idx": 12, "label": "True"}`` (booleans capitalised, as Python prints them);
- CB: ``"entailment" | "contradiction" | "neutral"``; RTE, AX-b, AX-g: ``"entailment" | "not_entailment"``;
- COPA: ``{"idx": 3, "label": 1}`` (the chosen option's index, a JSON integer);
- MultiRC: one line per paragraph, its questions' answers nested:
  ``{"idx": p, "passage": {"questions": [{"idx": q, "answers": [{"idx": a, "label": 0 | 1}]}]}}``;
- ReCoRD: ``{"idx": <query idx>, "label": "<the chosen candidate's text>"}``.

Every idx is a JSON integer, the test file's own idx (MultiRC: paragraph, question and answer idx; ReCoRD: the
query's). Lines are sorted by idx (the server does not mind, people reading the files do).

Checked against jiant, the SuperGLUE authors' library (nyu-mll/jiant):
- file names: jiant/scripts/benchmarks/benchmarks.py, SuperglueBenchmark.BENCHMARK_SUBMISSION_FILENAMES (they
  come from the specs' boards, `bortzoo.tasks.superglue`), one JSON object a line (SuperglueBenchmark.write_predictions);
- label values: each task's super_glue_format_preds in jiant/tasks/lib/<task>.py and jiant 1.x
  jiant/evaluate.py _write_*_preds (kept in the specs' `submission_labels`, where each is cited);
- the ``idx``/``label`` keys of the flat files: the same functions, ``{"idx": int(...), "label": ...}``;
- MultiRC's nesting: jiant/tasks/lib/multirc.py MultiRCTask.super_glue_format_preds and jiant 1.x
  jiant/evaluate.py _write_multirc_preds;
- ReCoRD: jiant 1.x jiant/evaluate.py _write_record_preds, ``{"idx": qst_idx, "label": answer}`` with the
  query's integer idx (jiant 2's jiant/tasks/evaluate/core.py ReCordEvaluationScheme.get_preds_from_accumulator
  writes the same idx as a string, cut from its guid; the integer of jiant 1.x, which wrote the baselines'
  submissions and matches the test file, is followed here, and the validator asks for it).
jiant writes the files but no zip; the zip holds them at its top level, as this project had the site's
instructions (the site could not be reached to check).

Run ``python -m bortzoo.tasks.superglue_leaderboard <folder or zip> [--complete]`` to print a submission's problems.
"""

from __future__ import annotations

import json
import operator
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from bortzoo.errors import BortzooError
from bortzoo.files import write_text
from bortzoo.tasks import get_task, tasks_of
from bortzoo.tasks.spec import CHOICE, CLASSES, RANKING, TaskSpec

SUPERGLUE_ZIP = "superglue-submission.zip"
SUFFIX = ".jsonl"
MULTIRC, RECORD = "multirc", "record"  # the two tasks whose ids are dicts and whose lines are not flat
MAX_PROBLEMS_PER_FILE = 20  # a broken file would otherwise list every one of its lines


def board_specs() -> dict[str, TaskSpec]:
    """Leaderboard column -> the spec whose labels its file holds (AX-b and AX-g: their own specs, predicted by
    the RTE model), in the specs' order."""
    boards: dict[str, TaskSpec] = {}
    for spec in tasks_of("superglue"):
        for item in spec.test:
            boards.setdefault(item.board, get_task(item.task) if item.task else spec)
    return boards


SUPERGLUE_BOARDS: tuple[str, ...] = tuple(board_specs())
SUPERGLUE_FILES: tuple[str, ...] = tuple(f"{board}{SUFFIX}" for board in SUPERGLUE_BOARDS)


# -- labels ----------------------------------------------------------------------------------------------
def _numeric(spec: TaskSpec) -> bool:
    """Whether the file holds the label as a JSON integer (COPA, MultiRC) rather than a string."""
    return spec.kind == CHOICE or (spec.kind == CLASSES and all(x.isdigit() for x in spec.submission_labels))


def allowed_labels(spec: TaskSpec) -> Optional[tuple]:
    """The label values a task's file may hold; None for ReCoRD (any string: a candidate's text)."""
    if spec.kind == RANKING:
        return None
    if spec.kind == CHOICE:
        return tuple(range(spec.num_choices))
    if not spec.submission_labels:
        raise BortzooError(f"task {spec.name}: no submission labels")
    return tuple(int(x) for x in spec.submission_labels) if _numeric(spec) else tuple(spec.submission_labels)


def _index(value: Any) -> int:
    """An integer (Python, numpy or 0-d tensor); a bool, a float or anything else is a TypeError."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an index")
    return operator.index(value)


def _board_of(spec: TaskSpec) -> str:
    return spec.test[0].board if spec.test else spec.name


# -- ids -------------------------------------------------------------------------------------------------
def _key(spec: TaskSpec, example_id: Any, board: str):
    """The comparable key of one row's id: an int; (paragraph, question, answer) for MultiRC; the query idx for
    ReCoRD (the idx its line carries)."""
    try:
        if spec.name == MULTIRC:
            if isinstance(example_id, Mapping):
                return tuple(_index(example_id[k]) for k in ("paragraph", "question", "answer"))
            values = tuple(_index(v) for v in example_id)
            if len(values) != 3:
                raise ValueError
            return values
        if spec.name == RECORD:
            return _index(example_id["query"]) if isinstance(example_id, Mapping) else _index(example_id)
        return _index(example_id)
    except (TypeError, ValueError, KeyError, IndexError):
        wanted = {MULTIRC: "a dict with integer paragraph, question and answer",
                  RECORD: "a dict with integer passage and query"}.get(spec.name, "an integer")
        raise BortzooError(f"{board}: example id {example_id!r} is not {wanted}") from None


def _show(spec: TaskSpec, key) -> str:
    if spec.name == MULTIRC:
        return "paragraph {} question {} answer {}".format(*key)
    return f"query {key}" if spec.name == RECORD else f"idx {key}"


# -- records ---------------------------------------------------------------------------------------------
def superglue_records(spec: "str | TaskSpec", ids: Sequence, predictions: Sequence,
                      candidates: Optional[Sequence[Sequence[str]]] = None, board: Optional[str] = None) -> list[dict]:
    """The JSON objects of one task's file, sorted by idx.

    Args:
        spec: The task whose labels the file holds (``axb`` for AX-b, not the RTE model's task).
        ids: One id per predicted row: an int; for MultiRC ``{"paragraph", "question", "answer"}``; for ReCoRD
            ``{"passage", "query"}``.
        predictions: One label id per row (the class, the option, or for ReCoRD the index of the chosen
            candidate in that row's `candidates`).
        candidates: ReCoRD only: each row's candidate texts, in the order the model scored them.
        board: The leaderboard column, for error messages (default: the spec's first test board).

    Raises:
        BortzooError: naming the board and the offending id: a prediction with no label, duplicate ids,
            ReCoRD rows without their candidates...
    """
    spec = get_task(spec)
    board = board or _board_of(spec)
    if spec.benchmark != "superglue":
        raise BortzooError(f"{board}: task {spec.name} is not a SuperGLUE task")
    if len(ids) != len(predictions):
        raise BortzooError(f"{board}: {len(ids)} ids but {len(predictions)} predictions")
    if spec.kind == RANKING and len(ids):
        if candidates is None:
            raise BortzooError(f"{board}: ReCoRD predictions are indices into each row's candidates, but no "
                               "candidates were given")
        if len(candidates) != len(ids):
            raise BortzooError(f"{board}: {len(ids)} ids but {len(candidates)} candidate lists")
    keys = [_key(spec, example_id, board) for example_id in ids]
    seen: set = set()
    for key in keys:
        if key in seen:
            raise BortzooError(f"{board}: duplicate example id ({_show(spec, key)}) in the predictions")
        seen.add(key)
    labels = allowed_labels(spec)
    values = []
    for row, (key, value) in enumerate(zip(keys, predictions)):
        try:
            index = _index(value)
        except TypeError:
            raise BortzooError(f"{board}, {_show(spec, key)}: prediction {value!r} is not an integer") from None
        if spec.kind == RANKING:
            options = candidates[row]
            if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
                raise BortzooError(f"{board}, {_show(spec, key)}: candidates {options!r} are not a list of texts")
            if not 0 <= index < len(options):
                raise BortzooError(f"{board}, {_show(spec, key)}: prediction {index} is not an index into its "
                                   f"{len(options)} candidates")
            if not isinstance(options[index], str):
                raise BortzooError(f"{board}, {_show(spec, key)}: candidate {options[index]!r} is not a string")
            values.append(options[index])
        else:
            if not 0 <= index < len(labels):
                raise BortzooError(f"{board}, {_show(spec, key)}: prediction {index} has no label in "
                                   f"{', '.join(map(str, labels))}")
            values.append(labels[index])
    rows = sorted(zip(keys, values), key=lambda pair: pair[0])
    if spec.name != MULTIRC:  # jiant: jiant/tasks/lib/<task>.py, super_glue_format_preds ({"idx", "label"})
        return [{"idx": key, "label": value} for key, value in rows]
    # jiant: jiant/tasks/lib/multirc.py, MultiRCTask.super_glue_format_preds (paragraph > questions > answers)
    paragraphs: dict[int, dict[int, list[dict]]] = {}
    for (paragraph, question, answer), value in rows:
        paragraphs.setdefault(paragraph, {}).setdefault(question, []).append({"idx": answer, "label": value})
    return [{"idx": paragraph, "passage": {"questions": [{"idx": question, "answers": answers}
                                                          for question, answers in questions.items()]}}
            for paragraph, questions in paragraphs.items()]


def write_jsonl(spec: "str | TaskSpec", board: str, ids: Sequence, predictions: Sequence, folder: "str | Path",
                candidates: Optional[Sequence[Sequence[str]]] = None, expected_rows: Optional[int] = None,
                expected_ids: Optional[Iterable] = None) -> Path:
    """`<folder>/<board>.jsonl`, written atomically (a half-written file never has the official name).

    `expected_rows` (the test split's length) and `expected_ids` (its ids) are checked before anything is
    written, so a partial prediction run does not leave a plausible-looking file.
    """
    spec = get_task(spec)
    if board not in SUPERGLUE_BOARDS:
        raise BortzooError(f"{board!r} is not a SuperGLUE leaderboard column; those are {', '.join(SUPERGLUE_BOARDS)}")
    if expected_rows is not None and len(ids) != expected_rows:
        raise BortzooError(f"{board}: {len(ids)} predictions for {expected_rows} test rows")
    records = superglue_records(spec, ids, predictions, candidates, board)
    if expected_ids is not None:
        problems = _compare_ids(spec, board, {_key(spec, i, board) for i in ids}, expected_ids)
        if problems:
            raise BortzooError("; ".join(problems))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{board}{SUFFIX}"
    return write_text(path, "".join(json.dumps(record) + "\n" for record in records))


# -- validation ------------------------------------------------------------------------------------------
def expected_ids_from(dataset, spec: "str | TaskSpec") -> list:
    """The ids of a test split (a `datasets.Dataset`, raw with its `idx` column or as `TaskData` encodes it,
    with `ids`), for `validate_submission(expected_ids=...)`."""
    spec = get_task(spec)
    columns = getattr(dataset, "column_names", None) or []
    column = next((c for c in (spec.id_column, "ids") if c in columns), None)
    if column is None:
        raise BortzooError(f"task {spec.name}: the dataset has no {spec.id_column!r} (or 'ids') column; it has "
                           f"{', '.join(columns)}")
    return list(dataset[column])


def _compare_ids(spec: TaskSpec, board: str, written: set, expected: Iterable) -> list[str]:
    try:
        wanted = {_key(spec, example_id, board) for example_id in expected}
    except BortzooError as err:
        return [f"expected ids for {board}: {err}"]
    problems = []
    for what, keys in (("missing", wanted - written), ("not in the test split", written - wanted)):
        if keys:
            shown = ", ".join(_show(spec, key) for key in sorted(keys)[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            problems.append(f"{board}{SUFFIX}: {len(keys)} ids {what}: {shown}{more}")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(obj: dict, keys: tuple[str, ...], where: str, problems: list[str]) -> bool:
    absent = [k for k in keys if k not in obj]
    extra = [k for k in obj if k not in keys]
    if absent:
        problems.append(f"{where}: missing key{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))}")
    if extra:
        problems.append(f"{where}: unexpected key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}")
    return not absent


def _check_label(spec: TaskSpec, value: Any, where: str, problems: list[str]) -> None:
    labels = allowed_labels(spec)
    if labels is None:
        if not isinstance(value, str):
            problems.append(f"{where}: label {value!r} is not a string (the chosen candidate's text)")
    elif _numeric(spec):
        if not _is_int(value) or value not in labels:
            problems.append(f"{where}: label {json.dumps(value)} is not one of the integers "
                            f"{', '.join(map(str, labels))}")
    elif not isinstance(value, str) or value not in labels:
        problems.append(f"{where}: label {json.dumps(value)} is not one of {', '.join(map(json.dumps, labels))}")


def _entries(items: list, kind: str, keys: tuple[str, ...], where: str, problems: list[str]):
    """(where, item) for each well-formed item of a MultiRC list (questions, or a question's answers): an object
    with `keys` and an integer idx not seen before in the list; the others' problems appended."""
    seen = set()
    for number, item in enumerate(items):
        here = f"{where} {kind} {number}"
        if not isinstance(item, dict):
            problems.append(f"{here}: not an object with {' and '.join(keys)}")
            continue
        if not _check_keys(item, keys, here, problems):
            continue
        if not _is_int(item["idx"]):
            problems.append(f"{here}: idx {item['idx']!r} is not an integer")
            continue
        if item["idx"] in seen:
            problems.append(f"{here}: duplicate {kind} idx {item['idx']}")
        seen.add(item["idx"])
        yield here, item


def _multirc_line(obj: dict, where: str, problems: list[str]) -> set:
    """The (paragraph, question, answer) ids of one MultiRC line, its problems appended."""
    ids: set = set()
    if not _check_keys(obj, ("idx", "passage"), where, problems):
        return ids
    paragraph, passage = obj["idx"], obj["passage"]
    if not _is_int(paragraph):
        problems.append(f"{where}: idx {paragraph!r} is not an integer")
        return ids
    if not isinstance(passage, dict) or not _check_keys(passage, ("questions",), f"{where} passage", problems):
        if not isinstance(passage, dict):
            problems.append(f"{where}: passage is not an object with 'questions'")
        return ids
    questions = passage["questions"]
    if not isinstance(questions, list) or not questions:
        problems.append(f"{where}: passage.questions is not a non-empty list")
        return ids
    for qwhere, question in _entries(questions, "question", ("idx", "answers"), where, problems):
        answers = question["answers"]
        if not isinstance(answers, list) or not answers:
            problems.append(f"{qwhere}: answers is not a non-empty list")
            continue
        for awhere, answer in _entries(answers, "answer", ("idx", "label"), qwhere, problems):
            _check_label(get_task(MULTIRC), answer["label"], awhere, problems)
            ids.add((paragraph, question["idx"], answer["idx"]))
    return ids


def validate_file(name: str, text: str, expected_ids: Optional[Iterable] = None) -> list[str]:
    """The problems of one submission file, given its name and contents."""
    board = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else None
    if board not in SUPERGLUE_BOARDS:
        return [f"{name}: not a SuperGLUE file name; the server takes {', '.join(SUPERGLUE_FILES)}"]
    spec = board_specs()[board]
    problems: list[str] = []
    written: set = set()
    paragraphs: set = set()  # MultiRC's line idxs
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        problems.append(f"{name}: empty file")
    for number, line in enumerate(lines, start=1):
        where = f"{name} line {number}"
        if not line.strip():
            problems.append(f"{where}: empty line")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: not valid JSON ({err.msg})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        if spec.name == MULTIRC:
            keys = _multirc_line(obj, where, problems)
            if _is_int(obj.get("idx")):
                if obj["idx"] in paragraphs:
                    problems.append(f"{where}: duplicate idx {obj['idx']}")
                paragraphs.add(obj["idx"])
            written |= keys
            continue
        if not _check_keys(obj, ("idx", "label"), where, problems):
            continue
        if not _is_int(obj["idx"]):
            problems.append(f"{where}: idx {obj['idx']!r} is not an integer")
            continue
        if obj["idx"] in written:
            problems.append(f"{where}: duplicate idx {obj['idx']}")
        written.add(obj["idx"])
        _check_label(spec, obj["label"], where, problems)
    if expected_ids is not None:
        problems.extend(_compare_ids(spec, board, written, expected_ids))
    if len(problems) > MAX_PROBLEMS_PER_FILE:
        problems = problems[:MAX_PROBLEMS_PER_FILE] + [f"{name}: ... and {len(problems) - MAX_PROBLEMS_PER_FILE} "
                                                       "more problems"]
    return problems


def _files(target: Path) -> tuple[dict[str, str], list[str]]:
    """name -> text of the files a folder (its .jsonl files), a zip (every member) or one file holds."""
    problems: list[str] = []
    files: dict[str, str] = {}
    if target.is_dir():
        for path in sorted(target.glob(f"*{SUFFIX}")):
            files[path.name] = path.read_text(encoding="utf-8", errors="replace")
    elif zipfile.is_zipfile(target):
        with zipfile.ZipFile(target) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                if "/" in info.filename:
                    problems.append(f"{target.name}: {info.filename} is not at the zip's top level")
                    continue
                files[info.filename] = archive.read(info).decode("utf-8", errors="replace")
    elif target.is_file():
        files[target.name] = target.read_text(encoding="utf-8", errors="replace")
    else:
        problems.append(f"{target}: no such file or folder")
    return files, problems


def validate_submission(target: "str | Path", expected_ids: Optional[Mapping[str, Iterable]] = None,
                        complete: bool = False) -> list[str]:
    """What the SuperGLUE server would reject in a submission; an empty list when there is nothing.

    Args:
        target: The folder `bortzoo predict` wrote (its ``*.jsonl`` files), the zip, or one ``.jsonl`` file.
        expected_ids: Leaderboard column (``BoolQ``, ``AX-b``; ``BoolQ.jsonl`` also read) -> the test split's
            ids (see `expected_ids_from`); that column's file must hold exactly these (MultiRC: every
            (paragraph, question, answer); ReCoRD: the query idxs).
        complete: Also report every official file that is absent (the server wants all ten).
    """
    target = Path(target)
    files, problems = _files(target)
    wanted: dict[str, Iterable] = {}
    for board, ids in (expected_ids or {}).items():
        board = board[:-len(SUFFIX)] if board.endswith(SUFFIX) else board
        if board not in SUPERGLUE_BOARDS:
            problems.append(f"expected ids given for {board!r}, which is not a SuperGLUE leaderboard column")
        else:
            wanted[board] = ids
    for name, text in files.items():
        board = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name
        problems.extend(validate_file(name, text, wanted.get(board)))
    if complete:
        absent = [name for name in SUPERGLUE_FILES if name not in files]
        if absent:
            problems.append(f"{target.name}: missing {', '.join(absent)}")
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Check a SuperGLUE submission (folder, zip or .jsonl file).")
    parser.add_argument("target")
    parser.add_argument("--complete", action="store_true", help="also report missing task files")
    args = parser.parse_args(argv)
    problems = validate_submission(args.target, complete=args.complete)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.target}: no problems found")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
