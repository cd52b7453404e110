"""Search-space YAML -> a validated ``SearchSpace`` -> an Optuna define-by-run function.

The vocabulary is fixed (docs/architecture.md, "Search spaces"); anything else is an error that
names the file and the field, because a typo in a space silently searches the wrong thing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.errors import UserError
from bench.families import family_names, get_family
from bench.training.config import known_keys

TOP_KEYS = {"schema", "family", "modality", "objective", "budget", "searcher", "scheduler", "fixed",
            "params", "extends", "lists", "device"}
# what a space may change per device kind (``device: {cpu: {...}, gpu: {...}}``), merged like `extends`
DEVICE_KEYS = {"budget", "scheduler", "fixed", "params", "lists"}
DEVICES = ("cpu", "gpu")
SUB_KEYS = {
    "objective": {"metric", "mode", "folds"},
    "budget": {"samples", "max_epochs", "time_budget"},
    "searcher": {"name", "sampler", "seed", "n_startup_trials"},
    "scheduler": {"name", "grace_period", "reduction_factor", "max_t", "data_fraction"},
}
PARAM_KINDS = {"choice", "float", "int"}
PARAM_KEYS = PARAM_KINDS | {"log", "step", "when"}
SAMPLERS = {"tpe", "random"}
SCHEDULERS = {"asha", "fifo"}


@dataclass(frozen=True)
class Param:
    key: str
    kind: str  # choice | float | int
    values: tuple  # choices, or (low, high)
    log: bool = False
    step: float | int | None = None
    when: dict = field(default_factory=dict)  # key -> tuple of allowed values

    def active(self, sampled: dict) -> bool:
        return all(sampled.get(k, UNSAMPLED.get(k, _MISSING)) in allowed for k, allowed in self.when.items())


_MISSING = object()
# what a trial gets for a key its space left unsampled, where a `when` may test it: a model without
# model.init (a scikit-learn head) starts from nothing, so `when: {model.init: [none]}` holds for it
UNSAMPLED = {"model.init": "none"}


@dataclass(frozen=True)
class SearchSpace:
    path: str
    family: str  # the search family the space is for (``family:``, or its old spelling ``modality:``)
    metric: str
    mode: str
    samples: int
    max_epochs: int
    searcher: dict
    scheduler: dict
    fixed: dict
    params: tuple[Param, ...]
    space_hash: str
    # seconds per device kind, {"cpu": s, "gpu": s}; None: no time limit (``budget.time_budget``)
    time_budget: dict | None = None

    def searcher_seed(self, run_seed: int = 0) -> int:
        """The seed of the sweep's Optuna sampler: the space's ``searcher.seed`` plus ``--seed``."""
        return self.searcher.get("seed", 0) + run_seed

    def time_budget_for(self, device: str) -> float | None:
        return (self.time_budget or {}).get(device)

    def define_by_run(self, extra_fixed: dict | None = None) -> DefineByRun:
        """The function for Ray's ``OptunaSearch(space=...)``; see ``DefineByRun``."""
        return DefineByRun(self.params, {**self.fixed, **(extra_fixed or {})})

    def without(self, keys: list[str]) -> SearchSpace:
        """This space minus some params (and the params whose `when` depends on them); the hash
        stays that of the file, since the file is what a resume compares."""
        from dataclasses import replace

        drop = set(keys)
        kept = [p for p in self.params if p.key not in drop and not (set(p.when) & drop)]
        return replace(self, params=tuple(kept))

    def model_names(self) -> list[str]:
        names = [v for p in self.params if p.key == "model.name" for v in p.values]
        if "model.name" in self.fixed:
            names.append(self.fixed["model.name"])
        return names


@dataclass(frozen=True)
class DefineByRun:
    """Samples the active params in file order and returns the constants.

    A class rather than a closure: Ray pickles the searcher, this function included, into the
    experiment's state so that a resumed sweep continues the same Optuna study.
    """

    params: tuple[Param, ...]
    constants: dict

    def __call__(self, trial) -> dict:
        sampled: dict = {}
        for p in self.params:
            if not p.active(sampled):
                continue
            if p.kind == "choice":
                sampled[p.key] = trial.suggest_categorical(p.key, list(p.values))
            elif p.kind == "float":
                sampled[p.key] = trial.suggest_float(p.key, p.values[0], p.values[1], log=p.log, step=p.step)
            else:
                sampled[p.key] = trial.suggest_int(p.key, p.values[0], p.values[1], log=p.log, step=p.step or 1)
        return dict(self.constants)


def builtin_space_path(family: str, dataset: str | None = None) -> Path:
    """The shipped space of a search family, or its per-dataset override when one exists."""
    return get_family(family).space_path(dataset)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"search space file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"search space {str(path)!r} is not valid YAML{where}: "
                        f"{getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"search space {str(path)!r} must be a mapping of keys (schema, params, ...)")
    return data


def _merge(parent: dict, child: dict) -> dict:
    merged = dict(parent)
    for key, value in child.items():
        if key == "extends":
            continue
        if isinstance(value, dict) and isinstance(parent.get(key), dict):
            # params: a child entry replaces the parent's whole entry; `null` removes it
            inner = {**parent[key], **value}
            merged[key] = {k: v for k, v in inner.items() if v is not None}
        else:
            merged[key] = value
    return merged


def load_space(path: str | Path, device: str | None = None) -> SearchSpace:
    """Read, resolve ``extends`` (one level) and the ``device`` section of ``device`` ('cpu' or
    'gpu'; None: the space without its device sections), validate and hash a search-space file.
    The hash is the resolved space's: the same file resolves to a different space per device."""
    path = Path(path)
    raw = _read_yaml(path)
    if "extends" in raw:
        parent_path = (path.parent / str(raw["extends"])).resolve()
        parent = _read_yaml(parent_path)
        if "extends" in parent:
            raise UserError(f"{str(path)!r}: `extends` goes one level only, but "
                            f"{str(parent_path)!r} extends another file")
        _check_keys(parent, parent_path)
        raw = _merge(parent, raw)
    _check_keys(raw, path)
    raw = _for_device(raw, device, path)
    return _build(_resolve_lists(raw, path), path)


def _for_device(raw: dict, device: str | None, path: Path) -> dict:
    """The space without its ``device`` section, with that section's entry for ``device`` merged
    over it (a param entry replaces the whole entry; ``null`` removes it)."""
    where = str(path)
    section = raw.get("device")
    rest = {k: v for k, v in raw.items() if k != "device"}
    if section is None:
        return rest
    if not isinstance(section, dict) or not section:
        raise UserError(f"{where!r}: field 'device' must be a mapping like {{cpu: {{...}}, gpu: {{...}}}}")
    for kind, overlay in section.items():
        if kind not in DEVICES:
            raise UserError(f"{where!r}: device takes cpu and gpu, not {kind!r}")
        if not isinstance(overlay, dict):
            raise UserError(f"{where!r}: device.{kind} must be a mapping of {', '.join(sorted(DEVICE_KEYS))}")
        bad = set(overlay) - DEVICE_KEYS
        if bad:
            raise UserError(f"{where!r}: device.{kind} cannot set {sorted(bad)[0]!r}; "
                            f"it takes {', '.join(sorted(DEVICE_KEYS))}")
        for key, value in overlay.items():
            if value is not None and not isinstance(value, dict):
                raise UserError(f"{where!r}: device.{kind}.{key} must be a mapping")
    if device is None:
        return rest
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return _merge(rest, {k: v for k, v in (section.get(device) or {}).items() if v is not None})


def _resolve_lists(raw: dict, path: Path) -> dict:
    """Replace the ``$name`` references of ``lists`` in params' ``choice`` and ``when``.

    ``{choice: $backbones}`` is the list itself; ``[fer_cnn, $backbones]`` splices it in. Resolved
    after ``extends``, so a child that redefines a list changes every parent param that names it.
    The result holds no ``lists`` and no references, so a space hashes the same as the file written
    out in full (what a resume compares).
    """
    where = str(path)
    lists = raw.get("lists") or {}
    if not isinstance(lists, dict):
        raise UserError(f"{where!r}: field 'lists' must be a mapping of names to lists, like {{backbones: [...]}}")
    for name, values in lists.items():
        if not isinstance(values, list) or not values or any(isinstance(v, (list, dict)) for v in values) \
                or any(_reference(v) for v in values):
            raise UserError(f"{where!r}: lists.{name} must be a non-empty list of plain values (no $references)")

    def expand(value, field_name: str):
        def one(name: str) -> list:
            if name not in lists:
                known = f"; it defines {', '.join('$' + n for n in lists)}" if lists else ""
                raise UserError(f"{where!r}: {field_name} refers to ${name}, which field 'lists' does not "
                                f"define{known}")
            return list(lists[name])

        if _reference(value):
            return one(_reference(value))
        if isinstance(value, list):
            return [v for item in value for v in (one(_reference(item)) if _reference(item) else [item])]
        return value

    resolved = {k: v for k, v in raw.items() if k != "lists"}
    if not isinstance(raw.get("params"), dict):
        return resolved  # _build says what params must be
    params = {}
    for key, spec in raw["params"].items():
        if isinstance(spec, dict):
            spec = dict(spec)
            if "choice" in spec:
                spec["choice"] = expand(spec["choice"], f"params.{key}.choice")
            if isinstance(spec.get("when"), dict):
                spec["when"] = {k: expand(v, f"params.{key}.when.{k}") for k, v in spec["when"].items()}
        params[key] = spec
    resolved["params"] = params
    return resolved


def _reference(value) -> str | None:
    """``$name`` -> ``name``; anything else -> None."""
    return value[1:] if isinstance(value, str) and value.startswith("$") and len(value) > 1 else None


def _check_keys(raw: dict, path: Path) -> None:
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise UserError(f"{str(path)!r}: unknown key {sorted(unknown)[0]!r}; "
                        f"a space takes {', '.join(sorted(TOP_KEYS))}")


def _build(raw: dict, path: Path) -> SearchSpace:
    where = str(path)
    if raw.get("schema") != 1:
        raise UserError(f"{where!r}: field 'schema' must be 1, got {raw.get('schema')!r}")
    # the search family the space is for; ``modality:`` is its old spelling (the shipped files keep
    # it, so their hashes, and the sweeps recorded under them, stay the same)
    if "family" in raw and "modality" in raw:
        raise UserError(f"{where!r}: give the search family once, as 'family' ('modality' is its old spelling)")
    key = "family" if "family" in raw else "modality"
    family = raw.get(key)
    families = family_names()
    if family not in families:
        raise UserError(f"{where!r}: field {key!r} must be one of {sorted(families)}, got {family!r}")
    sections = {}
    for name, allowed in SUB_KEYS.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise UserError(f"{where!r}: field {name!r} must be a mapping")
        bad = set(section) - allowed
        if bad:
            raise UserError(f"{where!r}: unknown key {name}.{sorted(bad)[0]}; "
                            f"{name} takes {', '.join(sorted(allowed))}")
        sections[name] = section
    objective = sections["objective"]
    metric = objective.get("metric", "val/uar")
    mode = objective.get("mode", "max")
    if mode not in ("min", "max"):
        raise UserError(f"{where!r}: objective.mode must be 'min' or 'max', got {mode!r}")
    if not str(metric).startswith("val/"):
        raise UserError(f"{where!r}: objective.metric must be a validation metric (val/...), "
                        f"got {metric!r}: selecting on test data makes the result meaningless")
    budget = sections["budget"]
    samples = _positive_int(budget.get("samples", 16), "budget.samples", where)
    max_epochs = _positive_int(budget.get("max_epochs", 10), "budget.max_epochs", where)
    time_budget = _time_budget(budget.get("time_budget"), where)
    searcher = {"name": "optuna", "sampler": "tpe", "seed": 0, **sections["searcher"]}
    if searcher["name"] != "optuna":
        raise UserError(f"{where!r}: searcher.name must be 'optuna', got {searcher['name']!r}")
    if searcher["sampler"] not in SAMPLERS:
        raise UserError(f"{where!r}: searcher.sampler must be one of {sorted(SAMPLERS)}, "
                        f"got {searcher['sampler']!r}")
    scheduler = {"name": "asha", "grace_period": 1, "reduction_factor": 3, "data_fraction": "auto",
                 **sections["scheduler"]}
    if scheduler["name"] not in SCHEDULERS:
        raise UserError(f"{where!r}: scheduler.name must be one of {sorted(SCHEDULERS)}, "
                        f"got {scheduler['name']!r}")
    from bench.sweep.fidelity import check_setting

    check_setting(scheduler["data_fraction"], where)
    if scheduler["name"] != "asha" and "data_fraction" in sections["scheduler"] \
            and scheduler["data_fraction"] not in ("off", False):
        raise UserError(f"{where!r}: scheduler.data_fraction needs the asha scheduler (its rungs set the "
                        f"fractions); remove it or set it to off")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise UserError(f"{where!r}: field 'fixed' must be a mapping of dotted keys to values")
    for key in fixed:
        _check_param_key(key, f"fixed.{key}", where)
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise UserError(f"{where!r}: field 'params' must be a non-empty mapping of dotted keys")
    params: list[Param] = []
    seen: set[str] = set()
    for key, spec in params_raw.items():
        params.append(_build_param(key, spec, seen, where))
        seen.add(key)
    overlap = seen & set(fixed)
    if overlap:
        raise UserError(f"{where!r}: {sorted(overlap)[0]!r} is both fixed and searched")
    # a k-fold objective: every trial trains on objective.folds inner folds of the training data and
    # reports their mean (bench.training.inner_trials); a trial config carries it as data.inner_folds
    folds = _positive_int(objective.get("folds", 1), "objective.folds", where)
    if folds > 1:
        if "data.inner_folds" in fixed or "data.inner_folds" in seen:
            raise UserError(f"{where!r}: set the k-fold objective with objective.folds, not data.inner_folds")
        fixed = {**fixed, "data.inner_folds": folds}
    space = SearchSpace(
        path=where, family=family, metric=metric, mode=mode, samples=samples,
        max_epochs=max_epochs, searcher=searcher, scheduler=scheduler, fixed=dict(fixed),
        params=tuple(params), space_hash="", time_budget=time_budget,
    )
    _check_models(space, where)
    canonical = json.dumps({k: raw[k] for k in sorted(raw) if k != "extends"}, sort_keys=True, default=str)
    return _replace_hash(space, hashlib.sha256(canonical.encode()).hexdigest()[:12])


def _replace_hash(space: SearchSpace, digest: str) -> SearchSpace:
    from dataclasses import replace

    return replace(space, space_hash=digest)


def _time_budget(value, where: str) -> dict | None:
    """``20m`` (any device) or ``{cpu: 20m, gpu: 1h}`` -> seconds per device kind."""
    from bench.sweep.durations import parse_duration

    if value is None:
        return None
    if isinstance(value, dict):
        bad = set(value) - {"cpu", "gpu"}
        if bad:
            raise UserError(f"{where!r}: budget.time_budget takes cpu and gpu, not {sorted(bad)[0]!r}")
        return {k: parse_duration(v, f"{where!r}: budget.time_budget.{k}") for k, v in value.items()}
    seconds = parse_duration(value, f"{where!r}: budget.time_budget")
    return {"cpu": seconds, "gpu": seconds}


def _positive_int(value, field_name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where!r}: field {field_name!r} must be a positive integer, got {value!r}")
    return value


def _check_param_key(key: str, field_name: str, where: str) -> None:
    if not isinstance(key, str) or "." not in key:
        raise UserError(f"{where!r}: field {field_name!r}: keys are dotted, like optim.lr")
    if key.startswith("model."):
        return
    if key not in known_keys():
        import difflib

        close = difflib.get_close_matches(key, sorted(known_keys()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{where!r}: unknown key {key!r} in {field_name.split('.')[0]}{hint}")


def _build_param(key: str, spec, seen: set[str], where: str) -> Param:
    _check_param_key(key, f"params.{key}", where)
    if not isinstance(spec, dict):
        raise UserError(f"{where!r}: params.{key} must be a mapping like {{choice: [...]}}")
    bad = set(spec) - PARAM_KEYS
    if bad:
        raise UserError(f"{where!r}: params.{key} has unknown key {sorted(bad)[0]!r}; "
                        f"use one of choice/float/int with optional log, step, when")
    kinds = [k for k in PARAM_KINDS if k in spec]
    if len(kinds) != 1:
        raise UserError(f"{where!r}: params.{key} needs exactly one of choice, float, int")
    kind = kinds[0]
    values = spec[kind]
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise UserError(f"{where!r}: params.{key}.choice must be a non-empty list")
        if any(isinstance(v, (list, dict)) for v in values):
            raise UserError(f"{where!r}: params.{key}.choice holds only plain values")
    else:
        if not (isinstance(values, list) and len(values) == 2):
            raise UserError(f"{where!r}: params.{key}.{kind} must be [low, high]")
        typ = (int, float) if kind == "float" else int
        if any(isinstance(v, bool) or not isinstance(v, typ) for v in values):
            raise UserError(f"{where!r}: params.{key}.{kind} bounds must be {kind} numbers, got {values}")
        if values[0] > values[1]:
            raise UserError(f"{where!r}: params.{key}.{kind}: low {values[0]} is above high {values[1]}")
        if spec.get("log") and values[0] <= 0:
            raise UserError(f"{where!r}: params.{key}: a log range needs low > 0")
        if kind == "float":
            values = [float(v) for v in values]
    when_raw = spec.get("when") or {}
    if not isinstance(when_raw, dict):
        raise UserError(f"{where!r}: params.{key}.when must be a mapping {{key: value}}")
    when = {}
    for cond_key, allowed in when_raw.items():
        if cond_key not in seen:
            raise UserError(f"{where!r}: params.{key}.when names {cond_key!r}, which must be a "
                            f"param listed above it")
        when[cond_key] = tuple(allowed) if isinstance(allowed, list) else (allowed,)
    return Param(key, kind, tuple(values), bool(spec.get("log", False)), spec.get("step"), when)


def _check_models(space: SearchSpace, where: str) -> None:
    import fer_models

    for name in space.model_names():
        try:
            fer_models.resolve_name(str(name))
        except (fer_models.UnknownModelError, ValueError) as exc:
            raise UserError(f"{where!r}: field 'model.name': {exc}") from None
