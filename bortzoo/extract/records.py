"""The search's files: one result per candidate, checksummed, named by the candidate's shape.

`bortzoo extract` writes them (a shard at a time) and `bortzoo extract report` reads them back; a torn or edited
file is detected, set aside and recomputed, and a file of a search with other settings is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from bortzoo.arch import Arch
from bortzoo.errors import BortzooError
from bortzoo.files import write_json as write_plain_json


def candidate_key(arch: Arch) -> str:
    return f"{arch.depth}-{arch.heads}-{arch.hidden}-{arch.intermediate}"


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_checked(path: Path, payload: dict) -> None:
    """Atomically write `payload` with a checksum of its content, so a torn or edited file is detected."""
    body = dict(payload)
    body["checksum"] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    write_plain_json(path, body, sort_keys=True)


def read_checked(path: Path, settings: str) -> Optional[dict]:
    """A valid result file, or None when missing. Corrupt files are reported, set aside and recomputed;
    files of another search are refused."""
    if not path.exists():
        return None
    try:
        body = json.loads(path.read_text())
        checksum = body.pop("checksum")
        if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != checksum:
            raise ValueError("checksum mismatch")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        print(f"result file {path} is corrupt ({err}); moved to {aside.name} and recomputing")
        return None
    if body.get("settings") != settings:
        raise BortzooError(f"{path} belongs to a search with other settings ({body.get('settings')}, this one "
                           f"{settings}); use another output folder")
    return body
