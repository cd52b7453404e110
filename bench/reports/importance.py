"""Hyperparameter importance of a finished sweep: rebuild its Optuna study in memory from the trials
(the searcher's own study lives inside Ray's pickled state) and ask Optuna's fANOVA evaluator."""
from __future__ import annotations

import logging

from bench.sweep.spaces import Param, SearchSpace
from bench.sweep.trials import TrialHistory


def _distribution(param: Param):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.kind == "choice":
        return CategoricalDistribution(list(param.values))
    if param.kind == "float":
        return FloatDistribution(param.values[0], param.values[1], log=param.log, step=param.step)
    return IntDistribution(param.values[0], param.values[1], log=param.log, step=param.step or 1)


def rebuild_study(space: SearchSpace, trials: list[TrialHistory]):
    """An in-memory study holding each trial's searched params and its best validation score."""
    import optuna

    study = optuna.create_study(direction="maximize" if space.mode == "max" else "minimize")
    for trial in trials:
        value = trial.best(space.metric, space.mode)
        if value is None:
            continue  # errored or interrupted before a validation score: nothing to attribute
        params, distributions = {}, {}
        for p in space.params:
            if p.key in trial.config:
                params[p.key] = trial.config[p.key]
                distributions[p.key] = _distribution(p)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
    return study


def param_importances(space: SearchSpace, trials: list[TrialHistory], seed: int = 0) -> dict[str, float]:
    """Importance per searched param (sums to 1); empty when there is too little to attribute:
    fewer than two scored trials, or no param that took two values in every trial."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)  # "A new study created in memory" is noise here
    try:
        study = rebuild_study(space, trials)
        if len(study.trials) < 2:
            return {}
        importances = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
        # a param with a single choice cannot matter; listing it at 0 only adds clutter
        fixed = {p.key for p in space.params if p.kind == "choice" and len(p.values) < 2}
        return {k: float(v) for k, v in importances.items() if k not in fixed}
    except (RuntimeError, ValueError):
        # Optuna raises when no param varies across the completed trials
        return {}
    finally:
        optuna.logging.set_verbosity(previous)
