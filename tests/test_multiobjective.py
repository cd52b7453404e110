import json

import pytest

from bench.api import parse_objectives
from bench.cli import main
from bench.errors import UserError
from bench.sweep.tune_backend import pareto_front

SPACE = """
schema: 1
modality: face
budget: {samples: 4, max_epochs: 1}
scheduler: {name: fifo}
fixed: {data.image_size: 32}
params:
  model.name: {choice: [fer_cnn, timm/resnet18]}
  optim.lr:   {float: [1.0e-3, 1.0e-2], log: true}
"""


def test_pareto_front_keeps_only_undominated_points():
    points = [{"id": 1, "uar": 0.5, "ms": 1.0}, {"id": 2, "uar": 0.6, "ms": 3.0},
              {"id": 3, "uar": 0.4, "ms": 2.0}, {"id": 4, "uar": 0.6, "ms": 5.0}]
    front = pareto_front(points, [("uar", "max"), ("ms", "min")])
    assert [p["id"] for p in front] == [1, 2]


def test_objectives_must_start_with_the_validation_metric(tmp_path):
    from bench.sweep.spaces import builtin_space_path, load_space

    space = load_space(builtin_space_path("face"))
    assert parse_objectives("val/uar,latency_ms", space) == (("latency_ms", "min"),)
    with pytest.raises(UserError, match="must start with the space's metric 'val/uar'"):
        parse_objectives("latency_ms,val/uar", space)
    with pytest.raises(UserError, match="unknown metric 'test/uar'"):
        parse_objectives("val/uar,test/uar", space)


@pytest.mark.slow
@pytest.mark.ray
def test_multi_objective_sweep_records_a_pareto_front(tmp_path, cache_dir, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "mo",
                 "--objective", "val/uar,latency_ms", "--cache-dir", str(cache_dir),
                 "--results-dir", str(results), "--quiet"]) == 0
    (record,) = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert record["objectives"] == ["val/uar", "latency_ms"]
    front = record["pareto"]
    assert front and all({"val/uar", "latency_ms", "model"} <= set(p) for p in front)
    assert pareto_front(front, [("val/uar", "max"), ("latency_ms", "min")]) == front
    assert record["val"]["uar"] == pytest.approx(max(p["val/uar"] for p in front))
    capsys.readouterr()
    assert main(["leaderboard", "--results-dir", str(results)]) == 0
    assert "Pareto front of sweep mo over val/uar vs latency_ms" in capsys.readouterr().out
