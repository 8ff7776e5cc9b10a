"""Stage 8 (publish): optional push of an export directory to the Hugging Face Hub as a dataset repo.

The token comes from the environment only (HF_TOKEN by default): never a parameter (Prefect stores and
shows parameters) and never logged or returned; the plan says only whether one is set. `dry_run=True`
(the default) verifies the export against its manifest and returns the plan without any network call.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from acd.export import manifest as mf

# What never goes up: our state file, temp files, media a consumer unpacked for ACM training.
IGNORE_PATTERNS = [mf.STATE_FILE, ".*", "**/.*", "acm/media/**"]


def plan(out_dir: str | Path, repo_id: str, *, private: bool = True, revision: str | None = None,
         token_env: str = "HF_TOKEN") -> dict[str, Any]:
    out_dir = Path(out_dir)
    import json

    m = json.loads((out_dir / mf.MANIFEST).read_text())
    files = [f["path"] for f in m["files"]] + [mf.MANIFEST]
    return {
        "repo_id": repo_id,
        "repo_type": "dataset",
        "private": private,
        "revision": revision,
        "folder": str(out_dir),
        "files": sorted(files),
        "n_files": len(files),
        "total_bytes": m["total_bytes"] + (out_dir / mf.MANIFEST).stat().st_size,
        "ignore_patterns": IGNORE_PATTERNS,
        "token_env": token_env,
        "token_set": bool(os.environ.get(token_env)),
        "commit_message": f"ACD export {m.get('inputs_sha256', '')[:12]}",
    }


def publish(out_dir: str | Path, repo_id: str, *, dry_run: bool = True, private: bool = True,
            revision: str | None = None, token_env: str = "HF_TOKEN") -> dict[str, Any]:
    """Verify the export, then (unless dry_run) create the repo if needed and upload the folder.

    Returns the plan, plus "commit_url" after a real upload. Raises if the export does not match its
    manifest (a half-written or edited export must not be published) or if the token is missing.
    """
    problems = mf.verify(out_dir)
    if problems:
        raise RuntimeError(f"export at {out_dir} does not match its manifest: {problems[:5]}")
    p = plan(out_dir, repo_id, private=private, revision=revision, token_env=token_env)
    p["dry_run"] = dry_run
    if dry_run:
        return p
    token = os.environ.get(token_env)
    if not token:
        raise RuntimeError(f"publishing needs a Hub token in ${token_env}")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="dataset", revision=revision,
                             ignore_patterns=IGNORE_PATTERNS, commit_message=p["commit_message"])
    p["commit_url"] = str(getattr(info, "commit_url", info))
    return p
