"""``model.init`` on the driver: resolve ``best:<dataset>/<family>``, refuse inits that could leak,
pin the references a sweep keeps to checkpoint folders, and say in the record where a model began.

- ``best:<dataset>/<family>`` is the leader by fer-bench's one selection rule
  (``results.best_record``: validation score, a search or benchmark record that kept a checkpoint),
  read from the sweep's ``--results-dir``. A reference with no such record leaves the space in the
  feasibility line, so a user without earlier sweeps gets today's space.
- ``init_check`` is the feasibility check of ``model.init`` (registered in ``feasibility``): an
  init that cannot be read, one trained on the target dataset itself (another fold's model has
  seen this fold's test subjects), one whose training files share content with the target's (its
  folds test on every sample), a classic scikit-learn head (nothing to initialise), or a network
  whose layers do not fit the model at this input size is removed with one reason.
- ``pin`` rewrites the surviving references to the checkpoint folders they name before any trial
  is sampled: the record's config then says which weights a model started from, and ``benchmark``
  and ``reproduce`` start from the same ones even after a newer leader is recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from bench.errors import UserError
from bench.results.record import Record
from bench.results.store import best_record, load_records
from bench.training.init import BEST_PREFIX, digest, init_architecture, init_path, is_none, read_init, same_model

KEY = "model.init"
LEADER_KINDS = ("search", "benchmark")


@dataclass(frozen=True)
class Resolved:
    """A ``model.init`` value made concrete: the folder or file, and the record it came from."""

    value: str
    path: str
    record: Record | None


def leader(records: list[Record], dataset: str, family: str) -> Record | None:
    """The record a ``best:`` reference loads (the rule ``inference.model_ref`` applies too)."""
    return best_record(records, dataset, family, kinds=LEADER_KINDS,
                       where=lambda r: bool(r.checkpoint) and (Path(r.checkpoint) / "checkpoint.pt").is_file())


def record_of(records: list[Record], path: str) -> Record | None:
    """The (latest) record whose checkpoint is the folder ``path``."""
    target = init_path(path).resolve()
    hits = [r for r in records if r.checkpoint and Path(r.checkpoint).expanduser().resolve() == target]
    return hits[-1] if hits else None


def resolve_value(value: str, results_dir: Path | None) -> Resolved:
    """The folder or file ``value`` names; a UserError (one sentence) when it names none."""
    value = str(value)
    records = load_records(results_dir) if results_dir is not None else []
    if value.startswith(BEST_PREFIX):
        dataset, sep, family = value[len(BEST_PREFIX):].partition("/")
        if not sep or not dataset or not family:
            raise UserError(f"{value} must look like best:<dataset>/<family>, e.g. best:fer2013/face")
        record = leader(records, dataset, family)
        if record is None:
            raise UserError(f"no {dataset}/{family} record with a checkpoint in {results_dir}")
        return Resolved(value, str(Path(record.checkpoint).expanduser().resolve()), record)
    path = init_path(value)
    if not path.exists():
        raise UserError(f"no checkpoint folder or weights file at {value}")
    return Resolved(value, str(path.resolve()), record_of(records, str(path)))


_LEAKS: dict[tuple, str | None] = {}


def leak_reason(source, ctx) -> str | None:
    """Why an init trained on ``source``'s data could hold the target's (``ctx.adapter``) test
    data, or None. Every target sample is some fold's test sample, so the init's training split
    (train + val of its fold: a refit trains on both) is compared with all of them, by content hash."""
    dataset = source.dataset
    if dataset is None:  # a bare weights file says nothing of its data: the user vouches for it
        return None
    if dataset == ctx.adapter.name:
        return f"it was trained on {dataset} itself, so another fold's model has seen this fold's test subjects"
    config = source.config or {}
    root, fold = config.get("data.data_root"), int(config.get("data.fold") or 0)
    key = (dataset, root, fold, ctx.adapter.name, str(ctx.data_root), len(ctx.samples), str(ctx.cache_dir))
    if key not in _LEAKS:
        _LEAKS[key] = _shared_files(dataset, root, fold, ctx)
    return _LEAKS[key]


def _shared_files(dataset: str, root: str | None, fold: int, ctx) -> str | None:
    from bench import paths
    from bench.data import get_adapter
    from bench.data.base import content_digests, shared_content

    cache = Path(ctx.cache_dir) if ctx.cache_dir is not None else paths.cache_dir(None)
    try:
        adapter = get_adapter(dataset)
        indexed = adapter.index(Path(root) if root else None, cache)
        splits = adapter.splits(indexed.samples, fold, 0)
        seen = splits["train"] + splits.get("val", [])
        mine = content_digests(adapter, seen, Path(root) if root else None, cache)
    except Exception as exc:  # its data is gone or moved: a leak cannot be ruled out
        return (f"its training data ({dataset} under {root or 'the cache'}) cannot be read here to rule out "
                f"a leak ({type(exc).__name__})")
    theirs = content_digests(ctx.adapter, ctx.samples, ctx.data_root, cache)
    count = shared_content(mine, theirs)
    if count:
        return (f"{count} of {ctx.adapter.name}'s {len(theirs)} files (which its folds test on) are identical "
                f"by content hash to files of its {dataset} training data ({len(mine)} files)")
    return None


def init_check(key: str, value, ctx) -> str | None:
    """The feasibility check of ``model.init`` (see the module docstring)."""
    if is_none(value):
        return None
    from fer_models.classic import CLASSIC_MODELS

    if ctx.model is not None and ctx.model in CLASSIC_MODELS:
        return f"{ctx.model} fits a scikit-learn head on fixed features: nothing to initialise"
    try:
        resolved = resolve_value(str(value), getattr(ctx, "results_dir", None))
        source = read_init(resolved.path)
    except UserError as exc:
        return str(exc)
    leak = leak_reason(source, ctx)
    if leak:
        return leak
    if ctx.model is None:
        return None
    if source.is_checkpoint and not same_model(source.meta.name, ctx.model):
        return f"it holds a {source.meta.name}, not a {ctx.model}"
    return _fits(resolved.path, source, ctx)


def _fits(path: str, source, ctx) -> str | None:
    """Build the model as a trial would (meta device: shapes only) and compare its layers."""
    import warnings

    import torch

    import fer_models
    from bench.training.config import BENCH_MODEL_KEYS, with_image_size
    from fer_models.transfer import is_head, shapes_fit

    kwargs = {k.split(".", 1)[1]: v for k, v in ctx.fixed.items()
              if k.startswith("model.") and k.split(".", 1)[1] not in BENCH_MODEL_KEYS}
    kwargs = {**init_architecture(path, ctx.model), **with_image_size(kwargs, ctx.fixed.get("data.image_size"))}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = fer_models.create_model(ctx.model, num_classes=ctx.num_classes, **kwargs)
    except Exception as exc:
        return f"{ctx.model} does not build with its architecture ({type(exc).__name__})"
    shapes = {k: tuple(v.shape) for k, v in source.state.items()}
    target_channels = net.input_spec.input_size[0] if source.channels is not None else None
    if not source.is_checkpoint and not any(k in shapes for k in net.state_dict() if not is_head(k)):
        if not hasattr(net, "backbone"):
            return "its weights match no layer of this model"
        net = net.backbone  # a bare backbone file (timm keys)
        target_channels = None
    reason = shapes_fit(net, shapes, source.channels, target_channels)
    return f"it does not fit {ctx.model} here: {reason}" if reason else None


def check_typed(refs: list[str], results_dir: Path | None) -> None:
    """``--init REF`` as typed: a reference that names no checkpoint (no such file, no record for a
    ``best:``) is refused in one sentence. Unlike a space's own ``best:`` choices, which quietly
    leave a space for a user without earlier sweeps, a typed one is what the user asked for."""
    for ref in refs:
        if is_none(ref):
            continue
        try:
            resolve_value(str(ref), results_dir)
        except UserError as exc:
            raise UserError(f"--init {ref}: {exc}") from None


def add_refs(space, refs: list[str]):
    """``--init REF``: ``space`` with REF among ``model.init``'s choices (the param is created,
    after ``model.name``, as ``[none, REF...]`` when the space has none)."""
    from bench.sweep.spaces import Param

    refs = [str(r) for r in refs if not is_none(r)]
    if not refs:
        return space
    params = list(space.params)
    keys = [p.key for p in params]
    if KEY in keys:
        i = keys.index(KEY)
        p = params[i]
        params[i] = replace(p, values=tuple(p.values) + tuple(r for r in refs if r not in p.values))
    else:
        fixed = dict(space.fixed)
        start = fixed.pop(KEY, "none")
        values = tuple(dict.fromkeys([start, *refs]))
        where = keys.index("model.name") + 1 if "model.name" in keys else 0
        params.insert(where, Param(KEY, "choice", values))
        return replace(space, params=tuple(params), fixed=fixed)
    return replace(space, params=tuple(params))


def pin(space, results_dir: Path | None):
    """``space`` with each ``best:`` value of ``model.init`` replaced by the checkpoint folder it
    names now (run after the feasibility check, which removed the ones that name none)."""
    def concrete(value):
        if is_none(value) or not str(value).startswith(BEST_PREFIX):
            return value
        return resolve_value(str(value), results_dir).path

    params = tuple(replace(p, values=tuple(concrete(v) for v in p.values)) if p.key == KEY else p
                   for p in space.params)
    fixed = {k: concrete(v) if k == KEY else v for k, v in space.fixed.items()}
    return replace(space, params=params, fixed=fixed)


def record_fields(config: dict, results_dir: Path | None) -> dict:
    """The record's ``init_record``, ``init_dataset`` and ``init_hash`` for a trained ``config``
    (empty without an init)."""
    value = config.get(KEY)
    if is_none(value):
        return {}
    records = load_records(results_dir) if results_dir is not None else []
    record = record_of(records, str(value)) if init_path(str(value)).exists() else None
    try:
        dataset = read_init(str(value)).dataset
    except UserError:
        dataset = None
    return {"init_record": record.id if record is not None else None,
            "init_dataset": dataset or (record.dataset if record is not None else None),
            "init_hash": digest(str(value))}
