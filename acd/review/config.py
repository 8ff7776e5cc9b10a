"""The recipe's `review:` block with defaults filled in, and the Label Studio token lookup."""
from __future__ import annotations

import copy
import os
from typing import Any

DEFAULTS: dict[str, Any] = {
    "compliance_bar": 0.95,  # a lot passes when its measured compliance is above this
    "confidence": 0.95,  # of the Wilson interval reported with every decision
    "margin": 0.03,  # the interval half-width the sample is sized for (±3 points)
    "label_studio": None,  # null: auto gate only; else {url, token_env | token_secret, document_root, ...}
    "wait": False,  # true: the build flow suspends until sync-reviews resumes it
    "on_reject": "drop",  # drop | regenerate: what the pipeline does with a rejected lot
    "max_regenerations": 1,  # on_reject=regenerate: rounds per lot before it stays rejected
    # The auto gate counts near-duplicate pairs as deduplicated (dropped, not non-compliant); a lot where
    # more than this share are near-duplicates is rejected anyway: that is a degenerate generator.
    "max_duplicate_share": 0.5,
    "gold_share": 0.05,  # planted known-bad pairs per sampled pair (annotator accuracy)
    "min_gold": 1,
    "overlap": 0.0,  # share of tasks Label Studio shows to a second annotator (agreement)
    # Sequential sampling: a lot whose interval still straddles the bar once every pushed task is answered
    # gets a further sample of max(followup_min, followup_share x pairs sampled so far), until it is decided
    # or every pair of the lot was reviewed (then the exact compliance decides).
    "followup_share": 0.25,
    "followup_min": 10,
}

LS_DEFAULTS: dict[str, Any] = {
    "url": "http://127.0.0.1:8080",
    "token_env": "LABEL_STUDIO_API_KEY",
    "token_secret": None,  # name of a Prefect Secret block holding the token
    "document_root": None,  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT of the server; env of that name if null
    "project_prefix": "ACD review",
    # URL of the acd.review_webhook endpoint (e.g. http://127.0.0.1:8765/label-studio): push registers it on
    # the project (annotation actions) so new annotations start a sync; null: sync by hand or on a schedule.
    "webhook_url": None,
    # A sync retries while Label Studio is unreachable (restarting): `retries` tries, waiting backoff_s,
    # then twice that, ... (1+2+4+8 s by default), then stops with one clear message; nothing read is lost.
    "retries": 5,
    "backoff_s": 1.0,
}


def review_config(cfg: dict | None) -> dict[str, Any]:
    """Accept either a whole recipe or its `review:` block; return the block with defaults filled in."""
    cfg = cfg or {}
    block = (cfg.get("review") or {}) if "review" in cfg or "pairs" in cfg else cfg
    # A misspelt or misplaced key (project_prefix outside label_studio) would be silently ignored: refuse it.
    _reject_unknown(block, DEFAULTS, "review")
    out = copy.deepcopy(DEFAULTS)
    out.update(copy.deepcopy(block))
    if out.get("label_studio"):
        _reject_unknown(out["label_studio"], LS_DEFAULTS, "review.label_studio")
        out["label_studio"] = {**LS_DEFAULTS, **out["label_studio"]}
    if out["on_reject"] not in ("drop", "regenerate"):
        raise ValueError(f"review.on_reject must be drop or regenerate, not {out['on_reject']!r}")
    return out


def _reject_unknown(block: dict, known: dict, where: str) -> None:
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def resolve_token(ls_cfg: dict) -> str:
    """The API token from the environment or a Prefect Secret block. Never logged, never a parameter."""
    env = ls_cfg.get("token_env") or "LABEL_STUDIO_API_KEY"
    token = os.environ.get(env)
    if not token and ls_cfg.get("token_secret"):
        from prefect.blocks.system import Secret  # lazy: the engine imports without Prefect running

        token = Secret.load(ls_cfg["token_secret"]).get()
    if not token:
        raise RuntimeError(f"Label Studio token not found: set ${env} or review.label_studio.token_secret")
    return token
