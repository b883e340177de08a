"""Resumable training: an sbi training (NPE, NRE_C, EmbedEmulate) saved as it goes, then continued.

:class:`ResumableTraining` numbers a trainer's ``train`` calls (its phases), saves its state
(:mod:`sbi_symmetry._sbi_compat.state`) during and after each, and on resume skips the phases that
had finished and continues the one that was cut.
"""

from sbi_symmetry._sbi_compat.state import load_trainer_state, trainer_state
from sbi_symmetry.checkpoint.training import ResumableTraining

__all__ = ["ResumableTraining", "load_trainer_state", "trainer_state"]
