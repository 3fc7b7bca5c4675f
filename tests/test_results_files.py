"""Results files are never clobbered (issue 18 #4) and speak the glossary's words (#7):
the full run keeps the default path; a partial run (--limit, --clips, other frames, a
subset of tasks, an approximation) writes beside it under a name that says what it holds;
``--out`` onto a file holding another run is refused with two fixes that run as printed;
files have schema version 2 (``clip_id``, nulls instead of sentinels) and version-1 files
still read. Everything runs through ``core.cli.main`` in this process, on a copy of the
session's small-demo cache (``own_cache``) so that no other test sees these files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.analysis.batch import COLUMNS, SCHEMA_VERSION, read_results, results_settings
from core.analysis.optional_steps import full_status
from core.analysis.overview import results_or_sample
from core.analysis.results_schema import SCHEMA_KEY
from core.cli import main
from core.errors import UserError
from core.runtime import counted
from core.workspace import Workspace
from test_user_input_checks import _commands, _run_literally


@contextlib.contextmanager
def copied_cache(source_cache: Path, into: Path) -> Iterator[Path]:
    """PLAYFAIR_CACHE points at a copy of ``source_cache`` (without its results files) inside the block."""
    copy = into / "cache"
    shutil.copytree(source_cache, copy, ignore=lambda d, names: ["results"] if Path(d) == source_cache else [])
    saved = os.environ["PLAYFAIR_CACHE"]
    os.environ["PLAYFAIR_CACHE"] = str(copy)
    try:
        yield copy
    finally:
        os.environ["PLAYFAIR_CACHE"] = saved


@pytest.fixture(scope="module")
def own_cache(demo_small: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The built small demo with a cache of this module's own (its results files are private)."""
    with copied_cache(Path(os.environ["PLAYFAIR_CACHE"]), tmp_path_factory.mktemp("results-files")) as copy:
        yield copy


def esvs(*flags: str) -> int:
    return main(["esvs", "--dataset", "demo-small", "--quiet", *flags])


def test_a_partial_run_writes_beside_the_full_file(own_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace("demo-small")
    full = ws.default_results_path("val")
    assert esvs() == 0 and full.exists()
    n_val = len(ws.clips("val"))
    before = full.read_bytes()
    capsys.readouterr()
    assert esvs("--limit", "5") == 0
    out = capsys.readouterr().out
    beside = full.with_name("esvs-val-limit5.parquet")
    assert f"wrote {beside}" in out and f"the full results file {full} is left as it was" in out
    assert full.read_bytes() == before and read_results(full)["clip_id"].nunique() == n_val
    assert read_results(beside)["clip_id"].nunique() == 5
    clip = str(ws.clips("val").index[1])
    for flags, name in [(("--frames", "2"), "esvs-val-n2"), (("--tasks", "noun"), "esvs-val-noun"),
                        (("--method", "kernelshap", "--budget", "40", "--frames", "3"), "esvs-val-n3-kernelshap-b40-seed0")]:
        assert esvs(*flags) == 0
        assert (full.parent / f"{name}.parquet").exists(), (flags, sorted(p.name for p in full.parent.iterdir()))
    capsys.readouterr()
    assert esvs("--clips", clip) == 0
    assert " rows, 1 clip, " in capsys.readouterr().out  # "1 clip", not "1 clips"
    [listed] = [p for p in full.parent.glob("esvs-val-clips1-*.parquet")]
    assert set(read_results(listed)["clip_id"]) == {clip}
    capsys.readouterr()
    assert esvs("--limit", str(n_val + 10)) == 0  # a limit above the split's size is the full run: same file, same content
    out = capsys.readouterr().out
    assert f"wrote {full}:" in out and "not the full run" not in out
    assert full.read_bytes() == before and results_settings(full)["limit"] is None


def test_out_onto_another_run_is_refused_with_two_fixes_that_run(own_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace("demo-small")
    full = ws.default_results_path("val")
    if not full.exists():
        assert esvs() == 0
    before = full.read_bytes()
    capsys.readouterr()
    assert esvs("--limit", "5", "--out", str(full)) == 2
    err = capsys.readouterr().err
    assert f"{full} holds another run ({len(ws.clips('val'))} val clips, tasks verb, noun" in err and "Nothing was computed." in err
    elsewhere, replace = _commands(err)
    assert "--out" in elsewhere and "--force" in replace and full.read_bytes() == before
    assert _run_literally(elsewhere) == 0  # each fix runs as printed
    assert full.read_bytes() == before
    assert _run_literally(replace) == 0
    assert read_results(full)["clip_id"].nunique() == 5  # replaced, as asked
    n_val = len(ws.clips("val"))  # the Overview and the status say that the file is partial
    assert f"a partial run of 5 of {n_val} clips" in results_or_sample(ws, "val")[1]
    assert not {s.name: s for s in full_status(ws)}["batch_esvs"].done
    assert esvs() == 0 and read_results(full)["clip_id"].nunique() == len(ws.clips("val"))  # the full run takes it back


def test_files_have_no_sentinels_and_a_schema_version(own_cache: Path) -> None:
    ws = Workspace("demo-small")
    out = own_cache / "short.parquet"
    assert esvs("--frames", "2,1000", "--limit", "2", "--tasks", "verb", "--out", str(out)) == 0
    assert pq.read_schema(out).metadata[SCHEMA_KEY] == str(SCHEMA_VERSION).encode()
    assert results_settings(out)["schema_version"] == SCHEMA_VERSION
    df = read_results(out)
    assert list(df.columns) == COLUMNS and "narration_id" not in df.columns
    exact = df[df.exact.fillna(True).astype(bool)]
    assert exact.seed.isna().all() and exact.samples_per_scale.isna().all() and exact.iterations.isna().all()
    skipped = df[df.status == "too_short"]
    assert len(skipped) == 2 and skipped.frame_position.isna().all() and skipped.frame_index.isna().all()
    ok = df[df.status == "ok"]
    assert sorted(ok.frame_position.unique()) == [0, 1] and str(ok.frame_position.dtype) == "Int16"  # 0-based in files
    approx = own_cache / "approx.parquet"
    assert esvs("--frames", "3", "--limit", "1", "--tasks", "verb", "--method", "kernelshap", "--budget", "40",
                "--seed", "4", "--out", str(approx)) == 0
    a = read_results(approx)
    assert (a.seed == 4).all() and a.samples_per_scale.isna().all() and (a.iterations == 1).all()
    assert (ws.clips("val").index[:1] == a.clip_id.unique()).all()


def test_version_1_files_still_read(own_cache: Path) -> None:
    """A file as version 1 wrote it (narration_id; -1 / 0 sentinels; no schema key) reads as version 2."""
    out = own_cache / "v2.parquet"
    assert esvs("--frames", "2,1000", "--limit", "2", "--tasks", "verb", "--out", str(out)) == 0
    v2 = read_results(out)
    v1 = v2.rename(columns={"clip_id": "narration_id"}).copy()
    for name, sentinel in (("samples_per_scale", 0), ("seed", -1), ("iterations", 1), ("frame_position", -1), ("frame_index", -1)):
        v1[name] = v1[name].fillna(sentinel).astype("int64")
    table = pa.Table.from_pandas(v1, preserve_index=False)
    old = own_cache / "v1.parquet"
    pq.write_table(table.replace_schema_metadata({"playfair": pq.read_schema(out).metadata[b"playfair"]}), old)
    again = read_results(old)
    assert list(again.columns) == COLUMNS
    pd.testing.assert_frame_equal(again.reset_index(drop=True), v2.reset_index(drop=True), check_dtype=False)


def test_counts_are_plural_only_above_one() -> None:
    assert counted(1, "head evaluation") == "1 head evaluation"
    assert counted(2000, "head evaluation") == "2,000 head evaluations" and counted(0, "clip") == "0 clips"


def test_a_newer_schema_is_refused_naming_the_fix(own_cache: Path) -> None:
    out = own_cache / "v2-for-v3.parquet"
    assert esvs("--frames", "2", "--limit", "1", "--tasks", "verb", "--out", str(out)) == 0
    table = pq.read_table(out)
    newer = own_cache / "v3.parquet"
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, SCHEMA_KEY: b"3"}), newer)
    with pytest.raises(UserError, match="schema version 3") as err:
        read_results(newer)
    assert err.value.fix
