"""Where the project's declarative files live (schemas/, prompts/, annotation/)."""
from __future__ import annotations

import os
from pathlib import Path

# The data directories sit beside the package in a checkout. ACD_HOME lets an installed copy point at them.
PROJECT_ROOT = Path(os.environ.get("ACD_HOME", Path(__file__).resolve().parent.parent))
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
RECIPES_DIR = SCHEMAS_DIR / "recipes"
PROMPTS_DIR = PROJECT_ROOT / "prompts"
ANNOTATION_DIR = PROJECT_ROOT / "annotation"
REFERENCE_DIR = Path(os.environ.get("ACD_REFERENCE", PROJECT_ROOT.parent / "shared" / "reference" / "anycap"))
