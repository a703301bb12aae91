"""A campaign's `input` reaches logstats' benchmark: bench.py reads the genome's own
`input.jsonl` (or the file TARS_BENCH_INPUT names, inside the genome) instead of its
generated log, and examples/typed_source.tars shows it end to end: the count the cycle
measures on the script's three records is not the default input's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOGSTATS = ROOT / "genomes" / "logstats"
EXAMPLES = ROOT / "examples"
RECORDS = (EXAMPLES / "data" / "access.jsonl").read_text(encoding="utf-8")


def bench(folder: Path, **env: str) -> tuple[int, dict[str, float] | str]:
    """bench.py as the sandbox runs it (`python -S bench.py` in the genome's folder)."""
    base = {"TARS_MEASURE": "instructions", "TARS_BENCH_SCALE": "0.005", "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-S", "bench.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )
    if done.returncode:
        return done.returncode, done.stderr
    return 0, json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def genome(tmp_path: Path) -> Path:
    folder = tmp_path / "logstats"
    shutil.copytree(LOGSTATS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_bench_reads_the_input_the_campaign_wrote(genome: Path) -> None:
    code, out = bench(genome)
    assert code == 0 and isinstance(out, dict) and out["lines"] == 10  # generated: 2000 x 0.005
    (genome / "input.jsonl").write_text(RECORDS, encoding="utf-8")
    code, out = bench(genome, TARS_BENCH_SCALE="1")
    assert code == 0 and isinstance(out, dict) and out["lines"] == 3, out
    raw = '{"line": "10.0.0.9 - - [10/Oct/2023:13:55:36 +0000] \\"GET / HTTP/1.1\\" 200 1 \\"-\\" \\"x\\" 0.1"}\n'
    (genome / "data").mkdir()
    (genome / "data" / "other.jsonl").write_text(raw * 5, encoding="utf-8")
    code, out = bench(genome, TARS_BENCH_SCALE="1", TARS_BENCH_INPUT="data/other.jsonl")
    assert code == 0 and isinstance(out, dict) and out["lines"] == 5, out


def test_bench_refuses_an_input_outside_the_genome_or_missing(genome: Path) -> None:
    outside = genome.parent / "secret.jsonl"
    outside.write_text(RECORDS, encoding="utf-8")
    for name in ("../secret.jsonl", str(outside), "data/../../secret.jsonl"):
        code, err = bench(genome, TARS_BENCH_INPUT=name)
        assert code == 1 and "must be a file inside the genome" in str(err), (name, err)
    (genome / "link.jsonl").symlink_to(outside)
    code, err = bench(genome, TARS_BENCH_INPUT="link.jsonl")
    assert code == 1 and "inside the genome" in str(err), err  # a link out is still out
    code, err = bench(genome, TARS_BENCH_INPUT="nope.jsonl")
    assert code == 1 and "no such file in the genome" in str(err), err
    (genome / "input.jsonl").write_text('{"client": "10.0.0.1"}\n', encoding="utf-8")
    code, err = bench(genome)
    assert code == 1 and "line 1: not a request record" in str(err), err


def _example(tmp: Path, *, with_input: bool = True, extra: str = "") -> Path:
    shutil.copytree(EXAMPLES / "data", tmp / "data")
    if extra:
        with (tmp / "data" / "access.jsonl").open("a", encoding="utf-8") as f:
            f.write(extra)
    text = (EXAMPLES / "typed_source.tars").read_text(encoding="utf-8")
    text = text.replace('"../genomes/logstats/genome.toml"', f'"{LOGSTATS}/genome.toml"')
    text = text.replace("cycles = 2", "cycles = 1\n  candidates = 1")
    if not with_input:
        text = text.replace("  input = lines\n", "")
    path = tmp / "typed_source.tars"
    path.write_text(text, encoding="utf-8")
    return path


def _run(path: Path, tmp: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(path), "--store", str(tmp / "s.db"),
         "--workdir", str(tmp / "w")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def test_a_malformed_record_is_named_before_anything_runs(tmp_path: Path) -> None:
    bad = (
        '{"client": "10.0.0.3", "method": "GET", "path": "/", "status": "oops", "latency_ms": 1}\n'
    )
    path = _example(tmp_path, extra=bad)
    code, out, err = _run(path, tmp_path)
    assert code == 1, out + err
    assert "line 4: field `status`: expected int, found 'oops'" in err, err
    assert f"{path}:18:1" in err  # at the source's declaration
    assert not (tmp_path / "s.db").exists() or "cycle" not in out  # no campaign ran


@pytest.mark.slow  # two logstats campaigns of one cycle, counted under valgrind: ~90 s
def test_the_cycle_measures_the_script_s_input_not_the_default(tmp_path: Path) -> None:
    measured = {}
    for with_input in (True, False):
        where = tmp_path / ("fed" if with_input else "default")
        where.mkdir()
        code, out, err = _run(_example(where, with_input=with_input), where)
        assert code == 0, out + err
        assert "benchmark fed 3 lines" in out
        found = re.search(r"measured ([0-9.]+)", out)
        assert found, out
        measured[with_input] = float(found.group(1))
    # the count of three requests is far below the generated log's (2,000 lines): were
    # the input ignored, both would be the same count (a count is exact)
    assert measured[True] < measured[False] / 2, measured
