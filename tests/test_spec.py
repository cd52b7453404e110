import pytest

from bench.errors import UserError
from bench.training.config import TrialConfig


def test_flat_round_trip_keeps_model_kwargs():
    flat = {"model.name": "timm/resnet18", "model.attention": "self", "optim.lr": 0.01,
            "train.batch_size": 32, "data.dataset": "synthetic"}
    cfg = TrialConfig.from_flat(flat)
    assert cfg.model.name == "timm/resnet18"
    assert cfg.model.kwargs == {"attention": "self"}
    assert cfg.optim.lr == 0.01 and cfg.train.batch_size == 32
    again = TrialConfig.from_flat(cfg.to_flat())
    assert again == cfg


@pytest.mark.parametrize("key", ["optim.learning_rate", "trian.batch_size", "lr"])
def test_unknown_keys_are_errors(key):
    with pytest.raises(UserError, match="unknown config key"):
        TrialConfig.from_flat({key: 1})
