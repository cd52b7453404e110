"""The search-family registry: ``SearchFamily``, ``register_family``, lookups and plugin loading.
Family modules (``mic``, ``fusion``, plugins) import this module, never the package, so the
package can import them without a loop."""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bench.errors import UserError
from fer_models.plugins import PLUGINS_ENV, env_plugin_modules

DEFAULT_FAMILY = "face"  # what `fer-bench benchmark` reads when no --family is given
ENTRY_POINT_GROUP = "fer_bench.families"


@dataclass(frozen=True)
class Preparation:
    """What a family's driver-side step decides before the sweep: keys fixed for every trial and
    params that leave the space (they would only add noise once those keys are fixed)."""

    fixed: dict = field(default_factory=dict)
    drop: tuple[str, ...] = ()


# (the model's features of the validation split, one row per sample, as ``training.engine.predict``
# gives them; the validation loader) -> {metric name: value}; reported as ``val/<name>``. The trial
# computes the features, so a family never imports the training layer above it.
EpochMetrics = Callable[[object, object], dict]
# (dataset adapter, results folder) -> Preparation; raises UserError when it cannot be prepared
Prepare = Callable[[object, Path], Preparation]


@dataclass(frozen=True)
class SearchFamily:
    name: str  # the CLI word, and the ``modality:`` of its space files
    data_modality: str  # the dataset adapter's modality it trains on: face, video, voice, av
    # the model registry's modality of the models it searches (``register_model(modality=...)``);
    # default: the family's name
    model_modality: str = ""
    # its spaces: ``<space_root>/<space_dir>.yaml``, overridden per dataset by
    # ``<space_root>/<space_dir>/<dataset>.yaml``; space_dir defaults to the name, space_root to
    # the shipped ``search_spaces`` package (a plugin passes its own folder)
    space_dir: str = ""
    space_root: Path | None = None
    fixed: dict = field(default_factory=dict)  # keys fixed for every trial of this family
    prepare: Prepare | None = None
    # run after every epoch on the validation split by trials of this family's models
    epoch_metrics: EpochMetrics | None = None
    summary: str = ""

    def __post_init__(self):
        if not self.model_modality:
            object.__setattr__(self, "model_modality", self.name)
        if not self.space_dir:
            object.__setattr__(self, "space_dir", self.name)

    def spaces_folder(self) -> Path:
        return Path(self.space_root) if self.space_root else Path(str(resources.files("search_spaces")))

    def space_path(self, dataset: str | None = None) -> Path:
        """The family's space for ``dataset`` (its own file when one exists), else its default."""
        root = self.spaces_folder()
        if dataset:
            override = root / self.space_dir / f"{dataset}.yaml"
            if override.is_file():
                return override
        path = root / f"{self.space_dir}.yaml"
        if not path.is_file():
            raise UserError(f"no built-in search space for {self.name!r} at {str(path)!r}; pass --space PATH")
        return path


FAMILIES: dict[str, SearchFamily] = {}


def register_family(family: SearchFamily) -> SearchFamily:
    if family.name in FAMILIES:
        raise ValueError(f"search family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> SearchFamily:
    """The registered family ``name``; an unknown one is a one-sentence error with close matches."""
    if name not in FAMILIES:
        load_plugins()
    if name not in FAMILIES:
        close = difflib.get_close_matches(name, list(FAMILIES), n=2)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise UserError(f"unknown search family {name!r}{hint}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_names() -> list[str]:
    """Every family, plugins included, in registration order (the CLI's choices)."""
    load_plugins()
    return list(FAMILIES)


def family_of_model(model_name: str) -> SearchFamily | None:
    """The family a model was registered for (its registry modality), if it is one. A trial's
    config does not name its family (a new key would change every config hash and record id),
    so per-family trial steps follow the model."""
    import fer_models

    modality = fer_models.model_entry(model_name).modality
    if modality not in FAMILIES:
        load_plugins()
    return FAMILIES.get(modality)


_loaded: set[str] = set()
_entry_points: list[str] | None = None  # scanned once: installed packages do not change mid-run


def load_plugins() -> None:
    """Import the third-party family modules once: the ``fer_bench.families`` entry points and
    the modules named in ``$FER_BENCH_PLUGINS`` (comma-separated)."""
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points

        _entry_points = [entry.module for entry in entry_points(group=ENTRY_POINT_GROUP)]
    modules = _entry_points + env_plugin_modules()
    for module in modules:
        if module in _loaded:
            continue
        _loaded.add(module)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"search-family plugin module {module!r} (from ${PLUGINS_ENV} or the "
                            f"{ENTRY_POINT_GROUP} entry points) does not import: {exc}") from None


