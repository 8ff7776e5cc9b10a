"""The built wheel runs on its own: `pip wheel` -> a fresh venv -> `acd build --recipe demo` from a folder
outside the repository gives a valid dataset, with schemas/, prompts/, annotation/ and the export templates
read from the installed package data (no checkout importable, no ACD_HOME).

The fresh venv gets the project venv's third-party packages through a .pth line (this machine installs
offline); .pth files inside that folder are not processed, so the checkout's editable install stays invisible.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from acd.paths import CHECKOUT_ROOT, DATA_DIRS

pytestmark = pytest.mark.skipif(CHECKOUT_ROOT is None, reason="builds the wheel from a checkout")

TINY = ["--set", "source.counts={image: 6, video: 4, audio: 4}", "--set", "pairs={image: 27, video: 39, audio: 15}",
        "--set", "lot_size=16", "--set", "checks.judge=none"]
SKIP = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "runs", "out", ".cache", "*.egg-info", "__pycache__",
                              "*.pyc", ".pytest_cache", "test-artifacts", ".prefect-home")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"  # a copy, so the build leaves no build/ or egg-info behind in the checkout
    shutil.copytree(CHECKOUT_ROOT, src, ignore=SKIP)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
          "-w", str(base / "dist")])
    (whl,) = (base / "dist").glob("acd_builder-*.whl")
    return whl


def test_wheel_carries_the_declarative_folders_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in DATA_DIRS:
        files = [p.relative_to(CHECKOUT_ROOT).as_posix() for p in (CHECKOUT_ROOT / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        assert files
        missing = [f for f in files if f"acd/_data/{f}" not in names]
        assert not missing, missing
    assert {"acd/export/templates/card.md.j2", "acd/export/templates/acm_prompts.yaml"} <= names
    assert "acd/_data/schemas/recipe.schema.json" in names


def test_installed_wheel_builds_the_demo_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)])

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ACD_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    where = _run([str(py), "-c", "import acd.paths as p; from acd.review.labelstudio import guideline_html, label_config;"
                  "print(p.__file__); print(p.PROJECT_ROOT); print(p.CHECKOUT_ROOT);"
                  "print(len(guideline_html()) > 500 and '<View' in label_config('video'))"], cwd=work, env=env).stdout
    module, root, checkout, annotation_ok = where.split()
    assert module.startswith(str(site)) and root == str(site / "acd" / "_data") and checkout == "None", where
    assert annotation_ok == "True"

    acd = str(venv / "bin" / "acd")
    build = _run([acd, "build", "--recipe", "demo", "--out", "out", *TINY], cwd=work, env=env)
    assert f"dataset written to {(work / 'out').resolve()}" in build.stdout, build.stdout
    assert len(list((work / "runs").glob("demo-*"))) == 1  # the default run dir, relative to where it ran
    valid = _run([acd, "validate", "out"], cwd=work, env=env)
    assert valid.stdout.strip().endswith("valid"), valid.stdout
    card = (work / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "controllable-captioning preference pairs" in card
    assert not (site / "acd" / "_data" / ".cache").exists()  # no state written into site-packages
