"""Two writers appending to one results store at once lose and interleave no line."""
import json
import subprocess
import sys

from bench.results.store import load_records

WRITER = """
import sys
from bench.results.record import Record
from bench.results.store import append_record
writer, count, results = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(count):
    # ~20 kB a line: several pages, so an unlocked or chunked write would interleave
    append_record(results, Record(kind="benchmark", dataset="synthetic", run=writer, fold=i,
                                  config={"pad": writer * 20000, "i": i}))
"""


def test_two_processes_appending_at_once_lose_no_record(tmp_path):
    results = tmp_path / "results"
    count = 150
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, name, str(count), str(results)])
               for name in ("a", "b")]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    lines = (results / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2 * count
    parsed = [json.loads(line) for line in lines]  # a torn or interleaved line would not parse
    for name in ("a", "b"):
        mine = [p for p in parsed if p["run"] == name]
        assert [p["fold"] for p in mine] == list(range(count))  # each writer's own order kept
        assert all(p["config"]["pad"] == name * 20000 for p in mine)
    assert len(load_records(results)) == 2 * count
