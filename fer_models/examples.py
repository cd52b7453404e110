"""Random inputs shaped like a model's ``input_spec``: the contract in docs/architecture.md,
"Inputs by modality", as code. Data pipelines follow the same table."""
from __future__ import annotations

import torch
import torch.nn as nn

from .spec import SEQUENCE_STREAMS, STREAM_CHANNELS, InputSpec


def stream_shape(spec: InputSpec, stream: str) -> tuple[int, ...]:
    """Per-sample shape of one stream of a video spec, e.g. ``flow`` -> (T, 2, S, S)."""
    if stream not in STREAM_CHANNELS:
        raise ValueError(f"unknown video stream {stream!r}; known: {', '.join(STREAM_CHANNELS)}")
    size = spec.image_size
    frame = (STREAM_CHANNELS[stream], size, size)
    return (spec.frames or 1, *frame) if stream in SEQUENCE_STREAMS else frame


def example_inputs_for_spec(spec: InputSpec, batch_size: int = 2, generator: torch.Generator | None = None):
    """A tensor, or a dict of tensors, that ``model(x)`` accepts for a model with this spec."""

    def rand(*shape):
        return torch.randn(batch_size, *shape, generator=generator)

    if spec.modality == "av":
        return {name: example_inputs_for_spec(InputSpec(**sub), batch_size, generator)
                for name, sub in spec.extras.items() if name in ("visual", "voice")}
    if spec.modality == "video":
        streams = tuple(spec.extras.get("streams", ("rgb",)))
        if streams == ("rgb",):
            return rand(*stream_shape(spec, "rgb"))
        return {s: rand(*stream_shape(spec, s)) for s in streams}
    if spec.modality == "face" and spec.extras.get("landmarks"):
        return {"image": rand(*spec.input_size), "landmarks": rand(spec.extras["landmarks"]).abs()}
    return rand(*spec.input_size)  # face image, log-mel (1 x n_mels x frames) or MFCC (n_mfcc x frames)


def example_inputs(model: nn.Module, batch_size: int = 2, generator: torch.Generator | None = None):
    """Random inputs matching ``model.input_spec``."""
    return example_inputs_for_spec(model.input_spec, batch_size, generator)
