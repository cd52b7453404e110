"""`search fusion` builds on the best visual and voice models recorded for the dataset's sources."""
import json

import pytest

from bench.cli import main


def test_missing_encoder_names_it_and_the_command(tmp_path, capsys):
    code = main(["search", "fusion", "--dataset", "synthetic-av", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs the best visual model of synthetic-video" in err
    assert "`fer-bench search video --dataset synthetic-video`" in err


@pytest.fixture
def one_cpu_ray():
    """This process's own Ray with one CPU: a one-sample sweep would otherwise give its trial both
    of the test machine's cores (spare cores), whose two torch threads then wait on each other
    while the suite's other test process uses a core."""
    import ray

    from bench.sweep import tune_backend

    if ray.is_initialized():  # an earlier test's, in this same process
        ray.shutdown()
    tune_backend.connect(None, num_cpus=1)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.ray
def test_fusion_sweep_uses_the_recorded_winners(tmp_path, cache_dir, one_cpu_ray):
    common = ["--samples", "1", "--max-epochs", "1", "--cache-dir", str(cache_dir),
              "--results-dir", str(tmp_path), "--quiet"]
    assert main(["search", "voice", "--dataset", "synthetic-voice", *common]) == 0
    code = main(["search", "fusion", "--dataset", "synthetic-av", *common])
    assert code == 2  # the visual winner is still missing
    assert main(["search", "video", "--dataset", "synthetic-video", *common]) == 0
    assert main(["search", "fusion", "--dataset", "synthetic-av", *common]) == 0
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    voice, video, fusion = records
    assert fusion["modality"] == "fusion" and fusion["model"] == "av_fusion"
    assert fusion["config"]["model.visual_checkpoint"] == video["checkpoint"]
    assert fusion["config"]["model.voice_checkpoint"] == voice["checkpoint"]
    assert "model.visual" not in fusion["searched"] and "model.voice" not in fusion["searched"]
