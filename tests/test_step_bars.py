"""One progress bar per build step (issue 9): each step's bar counts that step's own unit
with its own rate, and the pipeline hands every step its own progress."""

from __future__ import annotations

import re

from core.runtime import ALREADY_BUILT, PerStepProgress, StepBars, TqdmProgress


def test_each_step_gets_its_own_bar_counted_in_its_unit(capsys) -> None:
    bars = StepBars("build", enabled=True)
    features = bars.step("features")
    features(0.1, "100/1,000 frames · 10 frames/s")
    features(0.5, "500/1,000 frames")
    assert bars.current.bar.unit == "frames" and bars.current.total == 1000 and bars.current.bar.n == 500
    heads = bars.step("heads")  # closes the features bar; a step without a count shows its percentage, no rate
    heads(0.25, "mtrn k=2: epoch 10/40")
    assert bars.current.bar.unit == "%" and bars.current.bar.n == 25 and "rate" not in bars.current.bar.bar_format
    built = bars.step("priors")  # a step with nothing to do draws no bar
    built(1.0, ALREADY_BUILT)
    assert bars.current.bar is None
    ingest = bars.step("dataset")
    ingest(0.0, "3/12 segments")
    assert bars.current.bar.unit == "segments" and bars.current.bar.n == 3
    bars.close()
    err = capsys.readouterr().err
    assert "build · features" in err and "build · heads" in err and "build · dataset" in err and "build · priors" not in err
    assert "‰" not in err


def test_a_bar_counts_the_unit_its_messages_name_and_completes_on_done(capsys) -> None:
    bar = TqdmProgress("dataset", count_unit=StepBars.UNITS)
    bar(0.0, "starting")
    assert bar.bar is None  # nothing to show yet: no empty bar
    bar(0.06, "rendering demo clip 3/48")  # "<unit> <done>/<total>" counts as well
    assert (bar.bar.unit, bar.bar.n, bar.bar.total) == ("clips", 3, 48)
    bar(1.0, "done")  # completes the count rather than switching to a percentage
    assert (bar.bar.unit, bar.bar.n) == ("clips", 48)
    bar(0.5, "step 10 loss 2.3")  # a phase without a count: its percentage
    assert (bar.bar.unit, bar.bar.n) == ("%", 50)
    bar.close()
    assert "‰" not in capsys.readouterr().err


def test_a_drawn_line_shows_the_count_and_the_message_of_one_report(capsys) -> None:
    bar = TqdmProgress("features (ray)", total=1000, unit="frames")
    bar(0.1, "100/1,000 frames, 1/10 clips")
    bar.bar.mininterval, bar.bar.miniters = 0, 0  # draw at every update (tqdm skips draws within 0.1 s)
    for done in (350, 575, 1000):
        bar(done / 1000, f"{done:,}/1,000 frames, {done // 100}/10 clips")
    bar.close()
    lines = [re.search(r"\| (\d+)/1000 .*?([\d,]+)/1,000 frames", line) for line in capsys.readouterr().err.split("\r")]
    drawn = [(int(m[1]), int(m[2].replace(",", ""))) for m in lines if m]
    assert len(drawn) >= 3 and all(bar_n == message_n for bar_n, message_n in drawn) and drawn[-1] == (1000, 1000)


def test_pipeline_gives_every_step_its_own_progress(demo_small) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.calls: dict[str, list[tuple[float, str]]] = {}

        def step(self, name: str):
            self.calls[name] = []
            return lambda fraction, message: self.calls[name].append((fraction, message))

        def __call__(self, fraction: float, message: str) -> None:  # never used for a per-step build
            raise AssertionError(message)

    recorder = Recorder()
    assert isinstance(recorder, PerStepProgress)
    reports = demo_small.build(["priors", "heads"], progress=recorder)
    assert [r.name for r in reports] == list(recorder.calls) == ["priors", "heads"]
    for calls in recorder.calls.values():  # each step reports 0..1 of its own work, unprefixed
        assert calls and calls[-1][0] == 1.0 and not calls[-1][1].startswith(("priors:", "heads:"))
