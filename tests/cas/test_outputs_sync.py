"""`fscas outputs sync`: a queue's new outputs, job by job, with a checkpoint that survives a failure midway."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_runner import run_fscas

import fscas
from fscas.errors import ConfigError
from fscas.outputs_sync import checkpoint_path

QUEUE = {"farm_id": "farm-1", "queue_id": "queue-1"}


def _output(store: fscas.Store, tmp_path: Path, job: str, task: str, name: str, data: bytes, root: str) -> str:
    src = tmp_path / f"src-{job}-{task}-{name}"
    (src / "renders").mkdir(parents=True, exist_ok=True)
    (src / "renders" / name).write_bytes(data)
    key, _ = store.put_output(fscas.snapshot(src, hash_cache=False), src, **QUEUE, job_id=job, step_id="step-1",
                              task_id=task, session_action_id=f"sessionaction-{job}-{task}-{name}",
                              start_time=time.time(), source_root=root)
    return key


def test_a_queue_syncs_job_by_job_and_resumes_after_a_failure(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    with fscas.open_store(tmp_path / "store") as store:
        _output(store, tmp_path, "job-0", "task-1", "old.txt", b"before the sync began", "/farm/a")
        time.sleep(0.05)
        first = store.sync_outputs(**QUEUE, checkpoint_dir=ckpt, dry_run=True, now=time.time() + 1)
        assert first.bootstrapped == 1 and not Path(checkpoint_path(ckpt, **QUEUE)).exists()  # dry run: no file
        first = store.sync_outputs(**QUEUE, checkpoint_dir=ckpt, dest_for_root={"/farm/a": out}, now=time.time() + 1)
        assert (first.bootstrapped, first.jobs) == (1, ())  # lookback 0: the checkpoint starts from now
        assert Path(checkpoint_path(ckpt, **QUEUE)).exists() and not out.exists()

        _output(store, tmp_path, "job-1", "task-1", "f.txt", b"one", "/farm/a")
        _output(store, tmp_path, "job-2", "task-1", "g.txt", b"two", "/farm/unmapped")
        with pytest.raises(ConfigError, match="/farm/unmapped"):  # job-2's root goes nowhere: it stops there
            store.sync_outputs(**QUEUE, checkpoint_dir=ckpt, dest_for_root={"/farm/a": out})
        assert (out / "renders" / "f.txt").read_bytes() == b"one"  # job-1 landed and was recorded before job-2
        again = store.sync_outputs(**QUEUE, checkpoint_dir=ckpt, dest_for_root={"/farm/a": out, "/farm/unmapped": out})
        assert [j.job_id for j in again.jobs] == ["job-2"] and again.unchanged == 2
        assert (out / "renders" / "g.txt").read_bytes() == b"two"

        _output(store, tmp_path, "job-1", "task-1", "f.txt", b"rerun", "/farm/a")  # a rerun of a task: newer output
        rerun = store.sync_outputs(**QUEUE, checkpoint_dir=ckpt, dest_for_root={"/farm/a": out})
        assert [(j.job_id, j.manifests, j.files) for j in rerun.jobs] == [("job-1", 1, 1)]
        assert (out / "renders" / "f.txt").read_bytes() == b"rerun"  # overwrite by default: the newer run wins
        assert store.sync_outputs(**QUEUE, checkpoint_dir=ckpt, dest_for_root={"/farm/a": out}).jobs == ()

    with fscas.open_store(tmp_path / "other") as other, pytest.raises(ConfigError, match="another queue sync"):
        other.sync_outputs(**QUEUE, checkpoint_dir=ckpt)  # the checkpoint names its store


def test_cli_streams_a_json_line_per_job(tmp_path: Path) -> None:
    with fscas.open_store(tmp_path / "store") as store:
        for job in ("job-1", "job-2"):
            _output(store, tmp_path, job, "task-1", f"{job}.txt", job.encode(), "/farm/a")
    r = run_fscas("outputs", "sync", "--store", str(tmp_path / "store"), "--farm-id", "farm-1", "--queue-id",
                  "queue-1", "--checkpoint-dir", str(tmp_path / "ckpt"), "--bootstrap-lookback-minutes", "60",
                  "--root", f"/farm/a={tmp_path / 'out'}", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["event"], x.get("job_id")) for x in lines] == [("job", "job-1"), ("job", "job-2"), ("summary", None)]
    assert lines[-1]["files"] == 2 and lines[-1]["bootstrapped"] == 0
    assert sorted(p.name for p in (tmp_path / "out" / "renders").iterdir()) == ["job-1.txt", "job-2.txt"]
