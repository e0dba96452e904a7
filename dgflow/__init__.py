"""dgflow: Discriminator Gradient Flow refinement of generative-model samples.

    z_refined = dgflow.refine(generator, critic, z, steps=25)
"""
from .calibration import calibrate, calibration_report
from .critics import LogitCritic, as_logit, thermalize_spectral_norm
from .divergences import get_weight, make_weight
from .fit import FittedCritic, fit_critic
from .engine import RunInfo, step_stats
from .flow import PAPER, generate, refine
from .steps import auto_eta
from .stopping import AtChance, DataMatch, LogitMatch, best_step, estimated_gain
from .models import GaussianPrior, LatentGenerator, as_generator

__version__ = "0.1.0"

__all__ = ["refine", "generate", "PAPER", "RunInfo", "step_stats", "auto_eta", "LogitMatch", "AtChance", "DataMatch",
           "estimated_gain", "best_step", "fit_critic", "FittedCritic", "calibrate",
           "calibration_report", "get_weight", "make_weight", "as_logit", "LogitCritic",
           "thermalize_spectral_norm", "as_generator", "GaussianPrior", "LatentGenerator", "__version__"]
