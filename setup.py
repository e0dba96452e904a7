"""dgflow's one custom build step (everything else is in pyproject.toml).

The model zoo's registry, ``model_zoo.yaml``, lives at the top of the repository, outside the
package. A checkout or an editable install (``pip install -e .``) reads it there; for a wheel
(``pip install .``, ``python -m build``) this step copies it into the built package as
``dgflow/model_zoo.yaml``, where the installed package looks for it (``dgflow.zoo.registry``).
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ZOO = "model_zoo.yaml"


class BuildPyWithZoo(build_py):
    """``build_py`` that also copies the top-level ``model_zoo.yaml`` into ``dgflow/``."""

    def _zoo_target(self) -> Path:
        return Path(self.build_lib) / "dgflow" / ZOO

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the top-level file in place
        source = Path(__file__).resolve().parent / ZOO
        if not source.is_file():
            raise FileNotFoundError(f"{source} is missing: the wheel would have no model zoo")
        self.mkpath(str(self._zoo_target().parent))
        self.copy_file(str(source), str(self._zoo_target()))

    def get_outputs(self, include_bytecode: bool = True) -> list:
        outputs = super().get_outputs(include_bytecode)
        return outputs if getattr(self, "editable_mode", False) else [*outputs, str(self._zoo_target())]


setup(cmdclass={"build_py": BuildPyWithZoo})
