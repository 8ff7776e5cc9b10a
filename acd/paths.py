"""Where the project's declarative files live (schemas/, prompts/, annotation/, the export templates): the one
resource locator every module goes through.

The data root is, in order:
1. $ACD_HOME (an override: a folder holding schemas/, prompts/ and annotation/ a user edits);
2. the checkout this package runs from (the top-level folders are the source DESIGN.md describes);
3. the copy installed with the package (acd/_data, put into the wheel by setup.py's build step), found
   through importlib.resources, so `pip install acd-builder` runs anywhere without a checkout.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

DATA_DIRS = ("schemas", "prompts", "annotation")
PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The repository this package is imported from, or None for an installed copy."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and all((root / d).is_dir() for d in DATA_DIRS) else None


def data_root() -> Path:
    """The folder holding schemas/, prompts/ and annotation/ (see the module docstring for the order)."""
    if os.environ.get("ACD_HOME"):
        return Path(os.environ["ACD_HOME"]).expanduser()
    checkout = checkout_root()
    if checkout is not None:
        return checkout
    installed = resources.files("acd") / "_data"
    if not isinstance(installed, Path) or not installed.is_dir():  # a zipped or incomplete install
        raise RuntimeError(f"acd's package data is missing ({installed}); reinstall the wheel or set ACD_HOME")
    return installed


CHECKOUT_ROOT = checkout_root()
PROJECT_ROOT = data_root()
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
RECIPES_DIR = SCHEMAS_DIR / "recipes"
PROMPTS_DIR = PROJECT_ROOT / "prompts"
ANNOTATION_DIR = PROJECT_ROOT / "annotation"
EXPORT_TEMPLATES_DIR = PACKAGE_DIR / "export" / "templates"  # inside the package: code-coupled templates
# Local state of this installation (the review webhook's run registry): .cache/ in a checkout, else the user's
# cache folder, never inside site-packages.
LOCAL_STATE_DIR = (CHECKOUT_ROOT / ".cache" if CHECKOUT_ROOT else
                   Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "acd")
REFERENCE_DIR = Path(os.environ.get("ACD_REFERENCE", PROJECT_ROOT.parent / "shared" / "reference" / "anycap"))
