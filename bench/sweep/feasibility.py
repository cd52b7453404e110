"""Which values of a search space can run on this dataset, decided once on the driver before Ray
starts, so that no trial is ever sampled that is bound to fail.

A *check* is ``check(key, value, context) -> reason | None``: ``None`` when ``key=value`` can run
with ``context.model`` on ``context.adapter``'s data, else one short reason. Modules register
their own with ``register_check`` (e.g. "SSL encoder weights not found locally"); the built-in
ones are below. ``resolve`` asks every check about every value of the space (choices, and the
bounds of numeric ranges) for every model the value can be sampled with, then:

- a value no model can run is removed from the space;
- a value only some models cannot run makes the parameter inactive for those models (they get
  their constructor's default), when ``model.name`` is sampled before it; else the value goes;
- a parameter left with one value becomes fixed (no ``when``), or is dropped when that value is
  every model's default; ``when`` conditions on changed parameters are updated to match;
- a parameter with no feasible value at all, a fixed value that cannot run, or a ``model.*`` key
  no model's constructor takes is a ``UserError`` (one sentence, exit 2).

The result is deterministic, and ``Removal`` rows are stored in the sweep's meta so that
``--resume`` rebuilds the same space with ``apply`` (no checks) and the space hash (the file's)
stays the same.
"""
from __future__ import annotations

import fnmatch
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.data.base import DatasetAdapter
from bench.errors import UserError
from bench.sweep.spaces import UNSAMPLED, Param, SearchSpace
from bench.training.config import BENCH_MODEL_KEYS, with_image_size

# ``model.*`` keys the bench itself passes to every model (not a space typo when a model lacks them)
BENCH_MODEL_KWARGS = {"image_size"}
_NO = object()


@dataclass(frozen=True)
class Context:
    """What a check may look at. ``model`` is the model name the value would be used with."""

    modality: str  # the search's modality (face, video, mic, voice, fusion)
    adapter: DatasetAdapter
    samples: list  # the indexed samples (``Sample`` rows)
    fixed: dict = field(default_factory=dict)  # the space's fixed values and the sweep's own
    data_root: Path | None = None
    cache_dir: Path | None = None
    model: str | None = None
    results_dir: Path | None = None  # where best:<dataset>/<family> references are looked up (model.init)

    @property
    def num_classes(self) -> int:
        return len(self.adapter.class_names)


# a value a space param can take: YAML scalars (a list for list-valued keys such as model.init)
ParamValue = bool | int | float | str | list | None
Check = Callable[[str, object, Context], "str | None"]
_CHECKS: list[tuple[tuple[str, ...] | None, Check, bool]] = []


def register_check(fn: Check | None = None, *, keys: list[str] | tuple[str, ...] | None = None,
                   last: bool = False):
    """Register ``fn(key, value, context) -> reason | None``; ``keys`` (glob patterns such as
    ``model.*``) limits which keys it is asked about. Usable as ``@register_check`` or
    ``@register_check(keys=[...])``. Checks run in registration order, ``last=True`` ones (the
    generic build probe) after all others, so a specific reason is the one people read; the
    first reason wins."""

    def wrap(check: Check) -> Check:
        _CHECKS.append((tuple(keys) if keys else None, check, last))
        return check

    return wrap(fn) if fn is not None else wrap


def unregister_check(check: Check) -> None:
    """Remove a check ``register_check`` added (tests, plugins that unload)."""
    _CHECKS[:] = [row for row in _CHECKS if row[1] is not check]


def infeasible(key: str, value, context: Context) -> str | None:
    """The first registered check's reason why ``key=value`` cannot run, or None."""
    ordered = [row for row in _CHECKS if not row[2]] + [row for row in _CHECKS if row[2]]
    for keys, check, _ in ordered:
        if keys is not None and not any(fnmatch.fnmatchcase(key, k) for k in keys):
            continue
        reason = check(key, value, context)
        if reason:
            return str(reason)
    return None


# --- what a model's constructor takes -------------------------------------------------------------

def model_parameters(name: str) -> tuple[set[str] | None, dict]:
    """The keyword arguments model ``name`` takes (None: any, its constructor has ``**kwargs``
    all the way down) and their defaults. A factory that forwards ``**kwargs`` is followed to the
    class its return annotation names."""
    import fer_models

    entry, implied = fer_models.resolve_name(name)
    names: set[str] = set()
    defaults: dict = {}
    open_ended = False
    for fn in (entry.fn, _built_class(entry.fn)):
        if fn is None:
            break
        target = fn.__init__ if inspect.isclass(fn) else fn
        open_ended = False
        for p in list(inspect.signature(target).parameters.values()):
            if p.kind is p.VAR_KEYWORD:
                open_ended = True
            elif p.kind is not p.VAR_POSITIONAL and p.name not in ("self", "num_classes"):
                names.add(p.name)
                if p.default is not p.empty:
                    defaults.setdefault(p.name, p.default)
        if not open_ended:
            break
    defaults.update(implied)
    return (None if open_ended else names), defaults


def _built_class(fn) -> type | None:
    try:
        target = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that does not resolve: treat the factory as opaque
        return None
    return target if inspect.isclass(target) else None


# --- built-in checks -------------------------------------------------------------------------------

@register_check(keys=["model.name"])
def _model_modality(key, value, ctx: Context) -> str | None:
    import fer_models

    entry = fer_models.model_entry(str(value))
    if entry.modality != ctx.modality:
        return f"{value} is a {entry.modality} model, not a {ctx.modality} one"
    return None


@register_check(keys=["model.*"])
def _model_takes_key(key, value, ctx: Context) -> str | None:
    attr = key.split(".", 1)[1]
    if attr in BENCH_MODEL_KEYS or ctx.model is None or attr in BENCH_MODEL_KWARGS:
        return None
    accepted, _ = model_parameters(ctx.model)
    if accepted is not None and attr not in accepted:
        return f"{ctx.model} takes no {attr!r}"
    return None


@register_check(keys=["model.landmarks"])
def _landmarks_need_detected_faces(key, value, ctx: Context) -> str | None:
    if not value:
        return None
    from bench.data.face_files import FaceImageAdapter

    # the same rule as data.face_files.landmark_face_dataset, decided here from the index
    if not isinstance(ctx.adapter, FaceImageAdapter) or any(s.meta.get("aligned") for s in ctx.samples):
        return (f"dataset {ctx.adapter.name!r} in this layout ships face crops without MTCNN landmarks "
                f"(only layouts that `fer-bench data prepare` detects have them)")
    return None


@register_check(keys=["model.features"])
def _voice_features_here(key, value, ctx: Context) -> str | None:
    """A voice representation that cannot run on this machine (a speech encoder whose weights are
    not here: never downloaded) leaves the space; its kind says why."""
    from fer_models.voice_features import voice_kind

    try:
        kind = voice_kind(str(value))
    except ValueError:
        return None  # not a voice representation: the build probe reports it
    return kind.unavailable(str(value), ctx.fixed.get("model.weights"))


_PROBES: dict[str, str | None] = {}


@register_check(keys=["model.*", "data.image_size"], last=True)
def _model_builds_and_runs(key, value, ctx: Context) -> str | None:
    """Build the model with this value (and the space's fixed model keys) and run its feature
    extractor once on a random input at the trial's image size: catches a backbone without a
    spatial feature map under self-attention, an image size below a model's minimum, bad kwarg
    values, weights that cannot be had."""
    model = str(value) if key == "model.name" else ctx.model
    if model is None or key == "model.init":  # model.init is init_refs.init_check's
        return None
    kwargs = {k.split(".", 1)[1]: v for k, v in ctx.fixed.items()
              if k.startswith("model.") and k.split(".", 1)[1] not in BENCH_MODEL_KEYS}
    image_size = ctx.fixed.get("data.image_size")
    if key == "data.image_size":
        image_size = value
    elif key != "model.name":
        kwargs[key.split(".", 1)[1]] = value
    return probe_model(model, kwargs, image_size, ctx.num_classes)


def probe_model(model: str, kwargs: dict, image_size: int | None, num_classes: int) -> str | None:
    """None when ``model`` builds with ``kwargs`` and runs on an example input; else why not.
    Cached per process: resolving several spaces builds each variant once."""
    kwargs = with_image_size(kwargs, image_size)  # as trials build it
    try:
        _, defaults = model_parameters(model)
    except Exception:
        defaults = {}
    # a value equal to the constructor's default builds the same model: probe it once
    kwargs = {k: v for k, v in kwargs.items() if k not in defaults or defaults[k] != v or k == "image_size"}
    cache_key = json.dumps([model, sorted(kwargs.items()), num_classes], default=str)
    if cache_key not in _PROBES:
        # shapes only, on the meta device (no weights, no arithmetic: ~10x faster); a failure
        # there is confirmed on the CPU, so a module that cannot live on meta is not ruled out
        _PROBES[cache_key] = _probe(model, kwargs, num_classes, "meta") and _probe(model, kwargs, num_classes, "cpu")
    return _PROBES[cache_key]


def _probe(model: str, kwargs: dict, num_classes: int, device: str) -> str | None:
    import warnings

    import torch

    import fer_models

    try:
        with torch.device(device), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = fer_models.create_model(model, num_classes=num_classes, **kwargs)
            net.eval()
            with torch.no_grad():
                net.forward_features(fer_models.example_inputs(net, batch_size=1))
    except Exception as exc:  # anything a trial would die of at its first step
        text = str(exc).strip().splitlines()
        return f"{model} does not build or run with it ({type(exc).__name__}: {text[0] if text else ''})"
    return None


# --- resolution ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Removal:
    """One change to the space: ``value`` removed from ``key`` (``models`` empty), or ``key`` made
    inactive for ``models``."""

    key: str
    reason: str
    value: ParamValue = None  # a choice or a range's bound, as the space file wrote it
    models: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.models:
            return f"{self.key} for {', '.join(self.models)} ({self.reason})"
        return f"{self.key}={_show(self.value)} ({self.reason})"

    def to_dict(self) -> dict:
        return {"key": self.key, "value": self.value, "models": list(self.models), "reason": self.reason}

    @classmethod
    def from_dict(cls, row: dict) -> Removal:
        return cls(row["key"], row["reason"], row.get("value"), tuple(row.get("models") or ()))


@dataclass(frozen=True)
class Resolution:
    space: SearchSpace
    removed: tuple[Removal, ...]

    def line(self, dataset: str) -> str | None:
        """The one line a sweep prints, or None when nothing was removed."""
        if not self.removed:
            return None
        return (f"Resolved the space against {dataset}: removed "
                + "; ".join(r.describe() for r in self.removed) + ".")

    def to_meta(self) -> list[dict]:
        return [r.to_dict() for r in self.removed]


def _show(value) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def resolve(space: SearchSpace, context: Context, check: Callable[[str, object, Context], str | None] = infeasible,
            extra_fixed: dict | None = None) -> Resolution:
    """Remove every value of ``space`` that ``check`` says cannot run (see the module docstring).
    ``extra_fixed`` (the sweep's own constants) is visible to checks but never changed."""
    where = space.path
    context = replace(context, fixed={**(extra_fixed or {}), **space.fixed})
    _check_model_keys(space, where)
    removed: list[Removal] = []

    # 1. models: each model.name value on its own
    names = model_values(space)
    bad_models = {m: check("model.name", m, replace(context, model=m)) for m in names}
    for m in names:
        if bad_models[m] and "model.name" in space.fixed:
            raise UserError(f"{where!r}: fixed model.name {m} cannot run on dataset {context.adapter.name!r}: "
                            f"{bad_models[m]}")
    if names and all(bad_models.values()):
        raise UserError(f"{where!r}: no value of model.name can run on dataset {context.adapter.name!r}: "
                        + "; ".join(f"{m}: {r}" for m, r in bad_models.items()))
    removed += [Removal("model.name", r, m) for m, r in bad_models.items() if r]
    original, space = space, apply(space, removed, fold=False)

    # 2. fixed values, with every remaining model
    for key, value in space.fixed.items():
        if key == "model.name":
            continue
        models = model_values(space) or [_default_model()]
        reasons = {m: check(key, value, replace(context, model=m)) for m in models}
        if all(reasons.values()):
            raise UserError(f"{where!r}: fixed {key}={_show(value)} cannot run on dataset "
                            f"{context.adapter.name!r}: {next(iter(reasons.values()))}")
        step = [Removal("model.name", f"fixed {key}={_show(value)}: {r}", m) for m, r in reasons.items() if r]
        removed += step
        space = apply(space, step, fold=False)

    # 3. searched values, in file order (later params see the earlier changes)
    for param in space.params:
        if param.key == "model.name":
            continue
        current = _param(space, param.key)
        if current is None:  # dropped by an earlier change
            continue
        step = _resolve_param(space, current, context, check)
        removed += step
        space = apply(space, step, fold=False)
    # the same call --resume makes: one-value params are folded only now, after every check
    return Resolution(apply(original, removed), tuple(removed))


def _resolve_param(space: SearchSpace, param: Param, context: Context, check) -> list[Removal]:
    where, dataset = space.path, context.adapter.name
    models = active_models(space, param)
    if not models:
        return []
    probe_fixed = {**context.fixed, **_conditions_for(space, param)}
    probes = list(param.values) if param.kind == "choice" else sorted(set(param.values))
    bad: dict = {}  # value -> {model: reason}
    for value in probes:
        reasons = {}
        for m in models:
            reason = check(param.key, value, replace(context, model=m, fixed=probe_fixed))
            if reason:
                reasons[m] = reason
        bad[value] = reasons
    everywhere = [v for v in probes if len(bad[v]) == len(models)]
    if param.kind != "choice" and everywhere:
        v = everywhere[0]
        raise UserError(f"{where!r}: params.{param.key}: the bound {v} cannot run on dataset {dataset!r} "
                        f"({next(iter(bad[v].values()))}); narrow the range")
    if len(everywhere) == len(probes):
        raise UserError(f"{where!r}: no value of {param.key} can run on dataset {dataset!r}: "
                        + "; ".join(f"{_show(v)}: {next(iter(bad[v].values()))}" for v in probes))
    out = [Removal(param.key, next(iter(bad[v].values())), v) for v in everywhere]
    partial = {m: r for v in probes if v not in everywhere for m, r in bad[v].items()}
    if not partial:
        return out
    if _model_name_precedes(space, param):
        for m in sorted(partial):
            out.append(Removal(param.key, partial[m], models=(m,)))
        return _merge_model_removals(out)
    # model.name is not sampled before this param: the value has to go for everyone
    for v in probes:
        if v not in everywhere and bad[v]:
            out.append(Removal(param.key, next(iter(bad[v].values())), v))
    if param.kind != "choice" or len([r for r in out if not r.models]) == len(probes):
        raise UserError(f"{where!r}: {param.key} cannot run on dataset {dataset!r} with some models "
                        f"({next(iter(partial.values()))}); put it under `when: {{model.name: [...]}}`")
    return out


def _merge_model_removals(rows: list[Removal]) -> list[Removal]:
    """Models excluded for the same reason share one row (one short line)."""
    merged: dict[tuple[str, str], list[str]] = {}
    out = []
    for r in rows:
        if r.models:
            merged.setdefault((r.key, r.reason), []).extend(r.models)
        else:
            out.append(r)
    return out + [Removal(k, reason, models=tuple(ms)) for (k, reason), ms in merged.items()]


def apply(space: SearchSpace, removals: list[Removal] | tuple[Removal, ...], fold: bool = True) -> SearchSpace:
    """``space`` with ``removals`` applied and made consistent; no checks run (``--resume``).
    ``fold``: turn one-value params into fixed values (or drop them when they are the default)."""
    params = {p.key: p for p in space.params}
    for r in removals:
        p = params.get(r.key)
        if p is None:
            continue
        if r.models:
            allowed = tuple(m for m in _model_options(space, params) if m not in r.models)
            prior = p.when.get("model.name")
            if prior is not None:
                allowed = tuple(m for m in prior if m in allowed)
            params[r.key] = replace(p, when={**p.when, "model.name": allowed})
        elif p.kind == "choice":
            params[r.key] = replace(p, values=tuple(v for v in p.values if v != r.value))
    return _consistent(space, params, fold)


def _consistent(space: SearchSpace, params: dict[str, Param], fold: bool = True) -> SearchSpace:
    """Drop params that can no longer be active, fold one-value params into ``fixed`` (or drop them
    when the value is every model's default), and keep every ``when`` in step."""
    fixed = dict(space.fixed)
    defaults_of: dict[str, object] = {}  # dropped params -> the value the models get by default
    changed = True
    while changed:
        changed = False
        for key in list(params):
            p = params[key]
            when = {}
            alive = True
            for cond, allowed in p.when.items():
                if cond in params and params[cond].kind == "choice":
                    allowed = tuple(a for a in allowed if a in params[cond].values)
                    alive = alive and bool(allowed)
                    when[cond] = allowed
                elif cond in params:
                    when[cond] = allowed
                elif cond in fixed or cond in defaults_of:
                    value = fixed[cond] if cond in fixed else defaults_of[cond]
                    alive = alive and value in allowed  # always true (condition dropped) or never
                else:
                    alive = False  # its condition's param is gone: never sampled
            if p.kind == "choice" and not p.values:
                alive = False
            if not alive:
                del params[key]
                changed = True
                continue
            if when != p.when:
                p = params[key] = replace(p, when=when)
                changed = True
            if fold and p.kind == "choice" and len(p.values) == 1:
                value = p.values[0]
                bench_key = key.split(".", 1)[1] if key.startswith("model.") else None
                if bench_key in BENCH_MODEL_KEYS and key != "model.name" and value == BENCH_MODEL_KEYS[bench_key]:
                    defaults_of[key] = value  # model.init: none is every trial's default: no new fixed key
                    del params[key]
                    changed = True
                elif not p.when:
                    fixed[key] = value
                    del params[key]
                    changed = True
                elif key.startswith("model.") and key != "model.name" and _is_default(space, params, p, value):
                    defaults_of[key] = value
                    del params[key]
                    changed = True
    return replace(space, params=tuple(params[p.key] for p in space.params if p.key in params), fixed=fixed)


def _is_default(space: SearchSpace, params: dict, p: Param, value) -> bool:
    attr = p.key.split(".", 1)[1]
    models = [m for m in _model_options(space, params) if m in p.when.get("model.name", (m,))]
    for m in models:
        try:
            _, defaults = model_parameters(str(m))
        except Exception:
            return False
        if attr not in defaults or defaults[attr] != value:
            return False
    return bool(models)


def _model_options(space: SearchSpace, params: dict | None = None) -> tuple:
    params = params if params is not None else {p.key: p for p in space.params}
    if "model.name" in params:
        return tuple(params["model.name"].values)
    if "model.name" in space.fixed:
        return (space.fixed["model.name"],)
    return ()


def model_values(space: SearchSpace) -> list[str]:
    return [str(m) for m in _model_options(space)]


def _param(space: SearchSpace, key: str) -> Param | None:
    return next((p for p in space.params if p.key == key), None)


def active_models(space: SearchSpace, param: Param) -> list[str]:
    """The model names ``param`` can be sampled with."""
    models = model_values(space) or [_default_model()]
    params = {p.key: p for p in space.params}
    return [m for m in models if _can_be_active(param, m, params, space.fixed, set())]


def _default_model() -> str:
    from bench.training.config import ModelConfig

    return ModelConfig.name  # what a trial builds when the space names no model


def _can_be_active(param: Param, model: str, params: dict, fixed: dict, seen: set) -> bool:
    if param.key in seen:
        return False
    seen = seen | {param.key}
    for cond, allowed in param.when.items():
        if cond == "model.name":
            if model not in [str(a) for a in allowed]:
                return False
        elif cond in params:
            parent = params[cond]
            if parent.kind == "choice" and not set(parent.values) & set(allowed):
                return False
            if not _can_be_active(parent, model, params, fixed, seen) and UNSAMPLED.get(cond, _NO) not in allowed:
                return False
        elif cond in fixed:
            if fixed[cond] not in allowed:
                return False
        else:
            return False
    return True


def _conditions_for(space: SearchSpace, param: Param) -> dict:
    """Values of the params ``param``'s ``when`` needs (first allowed), so that e.g. attention
    heads are probed with attention on."""
    params = {p.key: p for p in space.params}
    out: dict = {}
    todo = [param]
    while todo:
        p = todo.pop()
        for cond, allowed in p.when.items():
            if cond == "model.name" or cond in out or cond not in params:
                continue
            parent = params[cond]
            options = [a for a in allowed if parent.kind != "choice" or a in parent.values]
            if options:
                out[cond] = options[0]
                todo.append(parent)
    return out


def _model_name_precedes(space: SearchSpace, param: Param) -> bool:
    keys = [p.key for p in space.params]
    return "model.name" in keys and keys.index("model.name") < keys.index(param.key)


def _check_model_keys(space: SearchSpace, where: str) -> None:
    """A ``model.*`` key that no model of the space takes is a typo: one sentence, exit 2."""
    import difflib

    keys = [(p.key, p) for p in space.params] + [(k, None) for k in space.fixed]
    for key, param in keys:
        if not key.startswith("model.") or key.split(".", 1)[1] in BENCH_MODEL_KEYS:
            continue
        attr = key.split(".", 1)[1]
        if attr in BENCH_MODEL_KWARGS:
            continue
        models = active_models(space, param) if param is not None else model_values(space) or [_default_model()]
        accepted_all: set[str] = set()
        for m in models:
            accepted, _ = model_parameters(m)
            if accepted is None or attr in accepted:
                break
            accepted_all |= accepted
        else:
            if not models:
                continue
            close = difflib.get_close_matches(attr, sorted(accepted_all), n=1)
            hint = f" (did you mean 'model.{close[0]}'?)" if close else ""
            takes = ", ".join(sorted(accepted_all - BENCH_MODEL_KWARGS))
            who = models[0] if len(models) == 1 else "any of " + ", ".join(models)
            raise UserError(f"{where!r}: {key} is not a parameter of {who}{hint}; it takes {takes}")


# model.init (references, leaks, fit) is decided in its own module; registered here with the built-ins
from bench.sweep import init_refs  # noqa: E402

register_check(init_refs.init_check, keys=["model.init"])
