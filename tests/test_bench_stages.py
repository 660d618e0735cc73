"""bench/stages.py counts the instructions of each stage of a delivered event under valgrind; what it runs
there must do the stage's whole work, or its figures mean nothing. Each stage is run here without valgrind
against the benchmarks' sink: every event of `deliver` reaches the sink once, as every POST of `floor` does,
and the earlier stages send nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.sink import Sink
from bench.stages import STAGES, prepare

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_does_its_whole_work(stage: str, tmp_path: Path) -> None:
    prepared = tmp_path / "events"
    prepare(prepared, 30)
    sink = Sink()
    try:
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "stages.py"), "--child", stage, "--events", "30",
                               "--sink", sink.url, "--prepared", str(prepared)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        expected = 30 if stage in ("deliver", "floor") else 0
        sink.wait_for(expected, 10)
        assert len(sink.calls) == expected and all(count == 1 for count in sink.calls.values())
    finally:
        sink.close()
