"""The ``fusion`` search family: an audio-visual model on top of the best recorded visual and
voice encoders of the AV dataset's source corpora."""
from __future__ import annotations

from pathlib import Path

from bench.errors import UserError
from bench.families.registry import Preparation, SearchFamily, register_family

# role -> (the fixed key that names its checkpoint, the search families that may provide it)
ENCODER_SOURCES = {
    "visual": ("model.visual_checkpoint", ("face", "video")),
    "voice": ("model.voice_checkpoint", ("voice",)),
}


def fusion_checkpoints(adapter, records: list) -> dict:
    """The best visual and voice checkpoints recorded for an audio-visual dataset's sources,
    each chosen by its validation score (never test)."""
    from bench.results.store import best_record

    found = {}
    for role, (key, modalities) in ENCODER_SOURCES.items():
        source = adapter.fusion_sources.get(role)
        best = best_record(records, source, modalities, metric="val/uar", kinds=("search",),
                           where=lambda r: bool(r.checkpoint) and Path(r.checkpoint).is_dir()) if source else None
        if best is None:
            what = source or f"a {role} dataset paired with {adapter.name!r} (none is registered)"
            hint = (f"; produce it with `fer-bench search {'video' if role == 'visual' else 'voice'} "
                    f"--dataset {source}`" if source else "")
            raise UserError(f"`search fusion --dataset {adapter.name}` needs the best {role} model of {what}, "
                            f"and none is recorded{hint}")
        found[key] = best.checkpoint
    return found


def prepare_fusion(adapter, results_dir: Path) -> Preparation:
    """Fix the encoders' checkpoints; their names leave the space, since sampling them would only
    add noise once the checkpoints are fixed. Runs before any data work, so a missing encoder is a
    one-line error."""
    from bench.results.store import load_records

    return Preparation(fixed=fusion_checkpoints(adapter, load_records(results_dir)),
                       drop=("model.visual", "model.voice"))


FUSION = register_family(SearchFamily(
    "fusion", data_modality="av", prepare=prepare_fusion,
    summary="audio-visual fusion of the best recorded visual and voice encoders",
))
