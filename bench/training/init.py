"""``model.init``: a trial's network starts from another model's weights instead of random ones.

The value is ``none``, a checkpoint folder (any fer-bench checkpoint: a sweep's winner under
``results/models/``, a benchmark retrain) or a local weights file (a state dict, ``.pt``/``.pth``
or ``.safetensors``: of a whole fer-bench model, or of a timm backbone, matched under
``backbone.``). ``best:<dataset>/<family>`` is a sweep's reference: the driver pins it to the
leader's checkpoint folder (``bench.sweep.init_refs``) before any trial sees it, so the record's
config names the weights it started from and ``benchmark`` / ``reproduce`` start from the same ones.

From a checkpoint the network is the init's: its model keyword arguments (architecture) are the
defaults under the trial's own, except the ones the new data decides (``image_size``,
``in_chans``) and ``pretrained``. Everything but the classifier is loaded
(``fer_models.transfer``: the head is rebuilt for the new classes, the first convolution adapted
to the channels); ``optim.init_lr_mult`` scales the loaded layers' learning rate (their own
optimizer param groups) and ``train.freeze_epochs`` keeps them frozen for the first epochs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from bench.errors import UserError
from fer_models.checkpoint import CHECKPOINT_FILE, ModelMeta, read_meta
from fer_models.transfer import TransferError, init_from_state, is_head

NONE = "none"
BEST_PREFIX = "best:"
# keyword arguments the target's data decides, never taken from the init
DATA_KWARGS = ("image_size", "in_chans", "pretrained")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


@dataclass(frozen=True)
class InitSource:
    """What a ``model.init`` value holds: the weights and, for a checkpoint, its model and config."""

    value: str
    path: Path  # the checkpoint folder, or the weights file
    state: dict  # the weights (tensors on the CPU)
    meta: ModelMeta | None  # a checkpoint's model description (None: a bare weights file)
    config: dict | None  # a checkpoint's flat trial config (its dataset, fold, data root)

    @property
    def is_checkpoint(self) -> bool:
        return self.meta is not None

    @property
    def channels(self) -> int | None:
        spec = self.meta.input_spec if self.meta is not None else None
        return spec.input_size[0] if spec is not None and spec.modality in ("face", "voice") else None

    @property
    def dataset(self) -> str | None:
        return (self.config or {}).get("data.dataset")


def is_none(value) -> bool:
    return value is None or str(value).strip().lower() in ("", NONE)


def init_path(value: str) -> Path:
    """The file or folder ``value`` names (a folder's ``checkpoint.pt`` counts as the folder)."""
    path = Path(str(value)).expanduser()
    return path.parent if path.name == CHECKPOINT_FILE else path


def read_init(value: str) -> InitSource:
    """The weights ``value`` names; a UserError (one sentence) when it names none."""
    value = str(value)
    if value.startswith(BEST_PREFIX):
        raise UserError(f"model.init={value} is a reference that `fer-bench search` resolves against its "
                        f"--results-dir; outside a sweep pass the checkpoint folder it names")
    path = init_path(value).resolve()
    stamp = path.joinpath(CHECKPOINT_FILE).stat().st_mtime_ns if (path / CHECKPOINT_FILE).is_file() else \
        path.stat().st_mtime_ns if path.is_file() else None
    if stamp is None:
        raise UserError(f"model.init={value}: no checkpoint folder (with {CHECKPOINT_FILE}) or weights file there")
    return _read(str(path), stamp)


@lru_cache(maxsize=8)
def _read(path: str, stamp: int) -> InitSource:  # stamp: a rewritten file is read again
    import json

    folder = Path(path)
    if folder.is_dir():
        state = torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        try:
            meta = read_meta(state, path)
        except ValueError as exc:
            raise UserError(f"model.init={path}: {exc}") from None
        config = state.get("config")
        config = json.loads(config) if isinstance(config, str) else (config or {})
        return InitSource(path, folder, state["model"], meta, config)
    if folder.suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"model.init={path}: a weights file ends in {', '.join(WEIGHT_SUFFIXES)}")
    try:
        if folder.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(folder, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, or a pickled object weights_only refuses
        raise UserError(f"model.init={path}: cannot read the weights ({type(exc).__name__})") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.init={path}: the file holds no state dict of tensors")
    return InitSource(path, folder, state, None, None)


def same_model(a: str, b: str) -> bool:
    """Whether model names ``a`` and ``b`` are one registry entry with the same implied keywords
    (``timm/resnet18`` is ``face_timm`` with ``backbone=resnet18``)."""
    import fer_models

    try:
        (ea, ia), (eb, ib) = fer_models.resolve_name(a), fer_models.resolve_name(b)
    except Exception:
        return a == b
    return ea.name == eb.name and ia == ib


def init_architecture(value: str, model_name: str) -> dict:
    """The init checkpoint's model keyword arguments, minus what the data decides: the defaults a
    trial's own ``model.*`` keys override. A weights file (or another model) adds none."""
    if is_none(value) or str(value).startswith(BEST_PREFIX):
        return {}
    source = read_init(value)
    if not source.is_checkpoint or not same_model(source.meta.name, model_name):
        return {}
    return {k: v for k, v in source.meta.kwargs.items() if k not in DATA_KWARGS}


def _prefix(model: torch.nn.Module, source: InitSource) -> str:
    """"" when the weights are keyed like the model; "backbone." for a bare timm backbone's."""
    own = [k for k in model.state_dict() if not is_head(k)]
    if source.is_checkpoint or any(k in source.state for k in own):
        return ""
    return "backbone."


def apply_init(model: torch.nn.Module, value: str, model_name: str) -> tuple[str, ...]:
    """Load ``value``'s weights into ``model`` (all but the head); return the loaded parameters'
    names. A misfit is a UserError: one sentence, a configuration error (never retried)."""
    if is_none(value):
        return ()
    source = read_init(value)
    if source.is_checkpoint and not same_model(source.meta.name, model_name):
        raise UserError(f"model.init={value} holds a {source.meta.name}, not a {model_name}")
    target = getattr(model, "input_spec", None)
    target_channels = target.input_size[0] if target is not None and source.channels is not None else None
    prefix = _prefix(model, source)
    state = source.state
    try:
        if prefix:  # a backbone file: the backbone's layers only; the rest stays as built
            names = init_from_state(model.backbone, source.state, source=f"model.init={value}",
                                    target_channels=target.input_size[0] if target is not None else None)
            return tuple(prefix + n for n in names)
        return tuple(init_from_state(model, state, source=f"model.init={value}", source_channels=source.channels,
                                     target_channels=target_channels))
    except TransferError as exc:
        raise UserError(str(exc)) from None


def set_frozen(model: torch.nn.Module, names: tuple[str, ...], frozen: bool) -> None:
    """Freeze (or unfreeze) the loaded parameters: AdamW and SGD skip a parameter without a gradient,
    so a frozen layer keeps its loaded weights and gets no optimizer state until it thaws."""
    wanted = set(names)
    for name, p in model.named_parameters():
        if name in wanted:
            p.requires_grad_(not frozen)


def digest(value: str) -> str | None:
    """The content hash of the init's weights (``checkpoint.pt`` or the weights file): what a
    record stores, so ``reproduce`` can tell when the file it starts from changed."""
    if is_none(value) or str(value).startswith(BEST_PREFIX):
        return None
    path = init_path(value)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    if not file.is_file():
        return None
    h = hashlib.sha256()
    with open(file, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()[:16]
