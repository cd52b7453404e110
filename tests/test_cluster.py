"""A real two-node Ray cluster on localhost: trials run on both nodes, and when the second node
dies mid-sweep its trials are retried on the head and the sweep completes."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

MAX_EPOCHS = 6
SPACE = """
schema: 1
modality: face
budget: {samples: 4, max_epochs: MAX_EPOCHS}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn, train.batch_size: 32}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
""".replace("MAX_EPOCHS", str(MAX_EPOCHS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raylet_pids(marker: str) -> set[int]:
    """Raylets of *this* cluster only: their command lines name our own temp dir / session."""
    out = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True).stdout.split()
    pids = set()
    for pid in out:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "/raylet" in cmdline:
            pids.add(int(pid))
    return pids


def stop_cluster(marker: str) -> None:
    """Stop what we started and nothing else (never `ray stop`, which ends every Ray on the machine)."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    for pid in out:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture
def two_node_cluster():
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    temp = tempfile.mkdtemp(prefix="fbray", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false",
                    *common], env=env, check=True, capture_output=True, timeout=120)
    head = raylet_pids(temp)
    subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                   capture_output=True, timeout=120)
    worker = raylet_pids(temp) - head
    assert len(head) == 1 and len(worker) == 1, (head, worker)
    try:
        yield {"address": f"127.0.0.1:{port}", "env": env, "worker_raylet": worker.pop()}
    finally:
        stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def read_rows(result: Path) -> list[dict]:
    rows = []
    for line in result.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # Ray is writing this line right now
            pass
    return rows


def node_ids(run_dir: Path) -> dict[str, set[str]]:
    out = {}
    for result in run_dir.glob("fer_trial_*/result.json"):
        rows = read_rows(result)
        out[result.parent.name] = {r["node_id"] for r in rows if "node_id" in r}
    return out


def nodes_mid_run(run_dir: Path, at_most: int) -> set[str]:
    """Nodes running a trial that has reported between 1 and `at_most` epochs."""
    nodes = set()
    for result in run_dir.glob("fer_trial_*/result.json"):
        rows = read_rows(result)
        if rows and "node_id" in rows[-1] and 1 <= rows[-1].get("training_iteration", 0) <= at_most:
            nodes.add(rows[-1]["node_id"])
    return nodes


def test_sweep_uses_both_nodes_and_survives_losing_one(tmp_path, cache_dir, two_node_cluster):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    run_dir = results / "runs" / "cluster"
    driver = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "search", "face", "--dataset", "synthetic", "--space", str(space),
         "--name", "cluster", "--address", two_node_cluster["address"], "--cache-dir", str(cache_dir),
         "--results-dir", str(results), "--quiet"],
        env=two_node_cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    # Kill only while each node has a trial mid-run (an epoch reported, at least two to go): a trial
    # that already finished on the worker, or one not yet started there, would prove nothing.
    while time.time() < deadline:
        if len(nodes_mid_run(run_dir, MAX_EPOCHS - 2)) >= 2:
            break
        assert driver.poll() is None, driver.stdout.read()
        time.sleep(0.5)
    else:
        driver.kill()
        pytest.fail("trials did not run on two nodes within 5 minutes")
    os.kill(two_node_cluster["worker_raylet"], signal.SIGKILL)  # the second node dies mid-sweep
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output
    (record,) = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert record["budget"]["trials"] == 4 and record["budget"]["errored"] == 0
    per_trial = node_ids(run_dir)
    assert len(per_trial) == 4
    assert len(set().union(*per_trial.values())) == 2
    # a trial cut off on the dead node went on from its checkpoint on the head
    assert any(len(nodes) == 2 for nodes in per_trial.values()), per_trial
    finished = [json.loads(p.read_text().splitlines()[-1])["training_iteration"]
                for p in run_dir.glob("fer_trial_*/result.json")]
    assert finished == [MAX_EPOCHS] * 4


@pytest.fixture
def head_without_plugins():
    """A one-node cluster started the way an admin would: its environment knows nothing of the
    driver's ``FER_BENCH_PLUGINS``, as a node on another machine would not."""
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    temp = tempfile.mkdtemp(prefix="fbray", dir="/tmp")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FER_BENCH_PLUGINS"}
    env["RAY_AUTH_MODE"] = "token"
    subprocess.run([ray, "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false",
                    "--num-cpus=1", "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
    try:
        yield {"address": f"127.0.0.1:{port}", "env": env}
    finally:
        stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_plugin_named_on_the_driver_reaches_the_cluster_workers(tmp_path, cache_dir, head_without_plugins):
    """A voice representation from a plugin module: the trial on the cluster's worker must resolve it,
    which it can only do with the driver's ``FER_BENCH_PLUGINS`` (carried in the job's runtime_env)."""
    from test_voice_features import TOY_KIND, TOY_SPACE

    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "toy_voice_kind.py").write_text(TOY_KIND)
    (tmp_path / "toy.yaml").write_text(TOY_SPACE)
    results = tmp_path / "results"
    env = {**head_without_plugins["env"], "FER_BENCH_PLUGINS": "toy_voice_kind",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "search", "voice", "--dataset", "synthetic-voice",
         "--space", str(tmp_path / "toy.yaml"), "--name", "toy-voice", "--address", head_without_plugins["address"],
         "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert record["config"]["model.features"] == "toy_loudness"
    assert record["budget"]["trials"] == 1 and record["budget"]["errored"] == 0
