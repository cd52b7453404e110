"""The ``mic`` search family: MIC on face video, with its identity-leakage probe after each epoch."""
from __future__ import annotations

from bench.families.registry import SearchFamily, register_family


def identity_leakage_probe(features, loader) -> float:
    """Accuracy of a linear probe naming the subject from the model's features on the validation
    split (``features``: one row per sample of ``loader``; lower is better: less identity in the
    expression code). Validation subjects are unseen
    in training, so the probe is fit on half of each validation subject's samples and scored on
    the other half."""
    import numpy as np

    from fer_models.mic import identity_leakage, split_within_subjects

    subjects = np.asarray(loader.dataset.subjects)
    fit, score = split_within_subjects(subjects)
    if not len(score):
        return float("nan")
    return identity_leakage(features[fit], subjects[fit], features[score], subjects[score])


def identity_leakage_metrics(features, loader) -> dict:
    return {"identity_leakage": identity_leakage_probe(features, loader)}


MIC = register_family(SearchFamily(
    "mic", data_modality="video", epoch_metrics=identity_leakage_metrics,
    summary="MIC (compressed-domain residuals, identity-aware) on face video",
))
