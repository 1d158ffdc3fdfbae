"""AeLLE: Lyapunov spectra as a representation of performance (dissertation ch. 3).

The pipeline, one module per step:

1. :mod:`~lyapbook.aelle.interpolate`: spectra of any lengths to one length L, non-finite ones
   rejected and counted (:func:`prepare_spectra`).
2. :mod:`~lyapbook.aelle.model` and :mod:`~lyapbook.aelle.fit`: the autoencoder with a linear
   loss head (Eqs. 3.5–3.6) and its staged training, one at a time (:func:`fit_aelle`) or many
   at once as one batched model (:func:`fit_aelle_group`: folds, seeds).
3. :mod:`~lyapbook.aelle.embed`: centred PCA of the latents (AeLLE) or of the raw spectra (LE-PCA),
   oriented "good to the right" (:func:`fit_pca`).
4. :mod:`~lyapbook.aelle.classify` and :mod:`~lyapbook.aelle.metrics`: median, best-F1,
   orthant and loss classifiers; recall / precision / F1 with bootstrap intervals over networks.
5. :mod:`~lyapbook.aelle.perturb`: latent shifts along the head's pseudo-inverse (Eq. 3.7) and the
   latents of a given predicted loss.

6. :mod:`~lyapbook.aelle.zoodata`, :mod:`~lyapbook.aelle.crossval`,
   :mod:`~lyapbook.aelle.readouts` and :mod:`~lyapbook.aelle.pretrained`: a zoo's spectra as
   input, the cross-validated comparison with spectrum statistics (Tables B2–B4; α0 chosen per
   fold on validation networks), every representation read by the same classifiers (median rule,
   logistic, AUC; the hyperparameters alone as a baseline) and the pre-trained AeLLE (Tables
   3.1–3.3), their
   autoencoder groups kept on disk by :mod:`~lyapbook.aelle.cache`.

Beside them: :mod:`~lyapbook.aelle.splits` (splits and folds by network),
:mod:`~lyapbook.aelle.features` (Fig 3.5's features, Table D5's composition) and
:mod:`~lyapbook.aelle.prednet` (the PredNet regressor of Figs 3.1 and 3.4).
"""

from .classify import (MedianClassification, OrthantRule, ThresholdRule, ThresholdScan, best_f1_threshold,
                       loss_classifier, median_classifier, median_direction, orthant_classifier)
from .embed import PCAEmbedding, fit_pca
from .features import SideComposition, SpectrumFeatures, side_composition, spectrum_features
from .cache import FIT_VERSION, cached_fit_group, fit_cache_dir
from .crossval import CLASSIFIERS, HEAD, CrossValidation, cross_validate
from .interpolate import PreparedSpectra, interpolate_spectrum, prepare_spectra
from .metrics import (PRF1, Interval, Labels, ScoreIntervals, SeedScores, bootstrap, bootstrap_f1_difference,
                      bootstrap_gap_to_best, bootstrap_scores, bootstrap_seed_scores, label_good, prf1, trivial_f1)
from .fit import fit_aelle, fit_aelle_group
from .model import AeEpoch, AeLLE, AeLLEFit, alpha_schedule, cpu_threads
from .perturb import LatentPerturbation, LossHyperplane, latent_perturbation, zero_loss_hyperplane
from .prednet import PredNet, PredNetFit, fit_prednet, fit_prednet_group
from .pretrained import STAGES, Pretrained, pretrained_aelle
from .readouts import RECIPES, Readouts, auc, hyperparameter_features, matched_readouts
from .splits import NetworkSplit, kfold_by_network, split_by_network
from .zoodata import ZooSpectra, silent_output_mae, untestable_reason, zoo_spectra, zoo_summary

__all__ = [
    "interpolate_spectrum", "prepare_spectra", "PreparedSpectra",
    "AeLLE", "AeEpoch", "AeLLEFit", "alpha_schedule", "cpu_threads", "fit_aelle", "fit_aelle_group",
    "PCAEmbedding", "fit_pca",
    "Labels", "label_good", "PRF1", "prf1", "Interval", "ScoreIntervals", "bootstrap_scores", "bootstrap",
    "ThresholdRule", "ThresholdScan", "MedianClassification", "OrthantRule", "median_direction", "median_classifier",
    "best_f1_threshold", "orthant_classifier", "loss_classifier",
    "LatentPerturbation", "latent_perturbation", "LossHyperplane", "zero_loss_hyperplane",
    "NetworkSplit", "split_by_network", "kfold_by_network",
    "SpectrumFeatures", "spectrum_features", "SideComposition", "side_composition",
    "PredNet", "PredNetFit", "fit_prednet", "fit_prednet_group",
    "SeedScores", "bootstrap_seed_scores", "bootstrap_f1_difference", "bootstrap_gap_to_best", "trivial_f1",
    "ZooSpectra", "silent_output_mae", "untestable_reason", "zoo_spectra", "zoo_summary", "FIT_VERSION", "cached_fit_group", "fit_cache_dir",
    "RECIPES", "Readouts", "auc", "hyperparameter_features", "matched_readouts",
    "CLASSIFIERS", "HEAD", "CrossValidation", "cross_validate", "STAGES", "Pretrained", "pretrained_aelle",
]
