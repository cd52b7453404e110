"""The ``mic`` search family: MIC on face video, with its identity-leakage probe after each epoch."""
from __future__ import annotations

from bench.families import SearchFamily, register_family


def identity_leakage_probe(model, loader, device) -> float:
    """Accuracy of a linear probe naming the subject from the model's features on the validation
    split (lower is better: less identity in the expression code). Validation subjects are unseen
    in training, so the probe is fit on half of each validation subject's samples and scored on
    the other half."""
    import numpy as np

    from bench.training.engine import predict
    from fer_models.mic import identity_leakage, split_within_subjects

    _, _, features = predict(model, loader, device=device)
    subjects = np.asarray(loader.dataset.subjects)
    fit, score = split_within_subjects(subjects)
    if not len(score):
        return float("nan")
    return identity_leakage(features[fit], subjects[fit], features[score], subjects[score])


def identity_leakage_metrics(model, loader, device) -> dict:
    return {"identity_leakage": identity_leakage_probe(model, loader, device)}


MIC = register_family(SearchFamily(
    "mic", data_modality="video", epoch_metrics=identity_leakage_metrics,
    summary="MIC (compressed-domain residuals, identity-aware) on face video",
))
