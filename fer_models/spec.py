"""Input metadata a model declares, so data pipelines can feed it without guessing.

Modelled on timm's PretrainedCfg: a frozen dataclass that travels with the model. A leaf module
(standard library only): ``bench.data`` imports it without importing any model family.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The video stream vocabulary, one definition for the models and the data pipeline: channels of
# each named stream (HWC in the prep cache, CHW in a batch).
STREAM_CHANNELS = {"rgb": 3, "flow": 2, "residual": 3, "iframe": 3, "apex": 3, "mv": 2}
VIDEO_STREAMS = tuple(STREAM_CHANNELS)
SEQUENCE_STREAMS = frozenset({"rgb", "residual", "flow", "mv"})  # T frames; the others one frame
MOTION_STREAMS = ("flow", "mv", "residual")  # zero-mean; the data pipeline scales them by the train std


@dataclass(frozen=True)
class InputSpec:
    """What one sample must look like when it reaches ``model.forward``.

    ``modality`` is one of ``face`` (a C x H x W image), ``video`` (T x C x H x W frames),
    ``voice`` (a spectrogram or MFCC matrix) or ``av`` (a dict of the above).
    """

    modality: str = "face"
    input_size: tuple[int, ...] = (3, 112, 112)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    frames: int | None = None
    sample_rate: int | None = None
    n_mels: int | None = None
    extras: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def image_size(self) -> int:
        return self.input_size[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, spec: InputSpec | dict) -> InputSpec:
        """The inverse of ``to_dict`` (also after a JSON round trip, which turns tuples into lists)."""
        if isinstance(spec, InputSpec):
            return spec
        fields = dict(spec)
        for key in ("input_size", "mean", "std"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return cls(**fields)
