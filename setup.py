"""The wheel carries the declarative folders as package data.

schemas/, prompts/ and annotation/ stay at the top of the checkout (the files a researcher edits, DESIGN.md's
layout); this build step copies them into the built package as acd/_data/<folder>, where acd.paths finds them
through importlib.resources when no checkout is around. Everything else is in pyproject.toml.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("schemas", "prompts", "annotation")  # acd.paths.DATA_DIRS


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install runs from the checkout, which has the folders
            return
        target = Path(self.build_lib) / "acd" / "_data"
        for name in DATA_DIRS:
            dest = target / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(ROOT / name, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildPyWithData})
