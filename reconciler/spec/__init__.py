"""The spec stage: `mico.yaml` contents in, a validated `Spec` (or every problem) out. Pure."""

from reconciler.spec.loader import Spec, load, select_config_files
from reconciler.spec.problems import Problem, SpecError

__all__ = ["Problem", "Spec", "SpecError", "load", "select_config_files"]
