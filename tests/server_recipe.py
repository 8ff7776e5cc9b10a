"""A recipe for builds against the local OpenAI-compatible test server (acd.testing.openai_server): the demo recipe
with an openai backend on that server, the test server's prose held to grammar and facts (it is not about the
media), every lot accepted by the automatic gate. Tests give the source, the pairs and what else they vary."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Priced like gpt-4o and gpt-4o-mini, so cost and budget figures are in realistic dollars.
PRICES = {"test-model": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
          "weak-model": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}


def server_recipe(tmp: Path, srv, cache: str, *, name: str, source: dict, pairs: dict, extra: dict | None = None,
                  **backend) -> Path:
    """Write the recipe to <tmp>/recipe-<cache>.yaml (request cache in <tmp>/<cache>) and return its path."""
    r = yaml.safe_load((ROOT / "schemas/recipes/demo.yaml").read_text())
    r.update({
        "name": name, "source": source, "pairs": pairs, "lot_size": 12,
        "checks": {"judge": "none", "max_attempts": 2, "content": ["grammar", "facts"]},
        "review": {"compliance_bar": 0.0, "label_studio": None, "wait": False},
        "backend": {"name": "openai", "endpoints": [{"base_url": srv.base_url, "max_in_flight": 8}],
                    "models": {"instruct": "test-model", "chosen": "test-model", "rejected": "weak-model"},
                    "params": {"temperature": 0.7, "max_tokens": 512}, "timeout_s": 10, "hedge": False,
                    "cache_dir": str(tmp / cache), "prices": PRICES, **backend},
        **(extra or {}),
    })
    path = tmp / f"recipe-{cache}.yaml"
    path.write_text(yaml.safe_dump(r))
    return path
