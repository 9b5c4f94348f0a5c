"""Studies: the lecture's claims as measured experiments, each with figures, a tidy table and verdicts.

Example::

    from deepwell.studies import run_study
    result = run_study("init", quick=True, output=Path("studies"))
    for verdict in result.verdicts:
        print(verdict.claim, verdict.status, verdict.evidence)
"""

from __future__ import annotations

import time
from pathlib import Path

from deepwell.errors import unknown_name
from deepwell.runtime import configure_cpu
from deepwell.studies import (
    activations, augmentation, batchnorm, dead_relu, depth, double_descent, dropout, early_stopping, init, landscape,
    layers_converge,
    polynomial, preprocess, regularization, transfer,
)
from deepwell.studies.base import Study, StudyOutput, StudyResult, Verdict, write_study_json, write_table

__all__ = ["STUDIES", "Study", "StudyOutput", "StudyResult", "Verdict", "run_study", "write_study_json", "write_table"]

STUDIES: dict[str, Study] = {
    "init": Study("init", "Weight initialisation: scale, zeros and constants", ("init-scale", "init-zero", "init-constant"),
                  init.run),
    "activations": Study("activations", "Activation functions: saturation, vanishing and exploding gradients, speed",
                         ("sigmoid-grad", "exploding", "relu-faster", "early-linear"), activations.run),
    "dead-relu": Study("dead-relu", "Dead ReLUs: dying at high learning rates, and born dead", ("dead-relu",), dead_relu.run),
    "polynomial": Study("polynomial", "Polynomial double descent: min-norm least squares across the interpolation threshold",
                        ("poly-descent",), polynomial.run),
    "landscape": Study("landscape", "Loss landscape: filter-normalised slices, paths between minima, plain vs residual",
                       ("nonconvex",), landscape.run),
    "batchnorm": Study("batchnorm", "Batch normalisation: batch vs running statistics; training deep nets across learning rates",
                       ("batchnorm",), batchnorm.run),
    "preprocessing": Study("preprocessing", "Input preprocessing: centring, scaling and whitening make the loss surface nicer",
                           ("preprocess",), preprocess.run),
    "depth": Study("depth", "Depth: deep vs one wide hidden layer at equal parameters", ("depth",), depth.run),
    "regularization": Study("regularization", "Weight penalties: L1 sparsity vs L2 shrinkage", ("penalties",), regularization.run),
    "dropout": Study("dropout", "Dropout and DropConnect: overfitting, test-time scaling, validation below training loss",
                     ("dropout", "dropout-gap", "dropconnect"), dropout.run),
    "early-stopping": Study("early-stopping", "Early stopping: restoring the best epoch, and stopping too early",
                            ("early-stopping",), early_stopping.run),
    "layers-converge": Study("layers-converge", "Which layers reach their final weights first", ("layers-converge",),
                             layers_converge.run),
    "augmentation": Study("augmentation", "Data augmentation on small training sets: images (digits) and signals (MNIST-1D)",
                          ("augmentation",), augmentation.run),
    "transfer": Study("transfer", "Transfer learning: similar vs dissimilar source", ("transfer-similar", "transfer-dissimilar"),
                      transfer.run),
    "double-descent": Study("double-descent", "Double descent: model-wise, epoch-wise and sample-wise", ("double-descent",),
                            double_descent.run),
}


def run_study(name: str, quick: bool = True, output: Path = Path("studies"), seed: int = 0) -> StudyResult:
    """Run the study ``name`` and write its folder ``output/name/`` (figures, tables, study.json).

    Args:
        name: one of ``STUDIES`` (init, activations, dead-relu).
        quick: small settings that finish in under a minute on 2 CPU cores; False for the reference settings.
        output: the folder that receives the study folder.
        seed: seeds every random draw of the study.

    Raises:
        ConfigError: unknown study name (the message lists the known ones).
    """
    if name not in STUDIES:
        raise unknown_name("study", name, STUDIES)
    configure_cpu()  # flush-to-zero: overfitting runs otherwise crawl through denormals
    study = STUDIES[name]
    folder = Path(output) / name
    folder.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    produced = study.run(folder, quick, seed)
    result = StudyResult(name=name, title=study.title, path=folder, verdicts=produced.verdicts, figures=produced.figures,
                         tables=produced.tables, seconds=time.perf_counter() - started, quick=quick, seed=seed,
                         cpu_seconds=time.process_time() - cpu_started)
    write_study_json(result)
    return result
