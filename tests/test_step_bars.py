"""One progress bar per build step (issue 9): each step's bar counts that step's own unit
with its own rate, and the pipeline hands every step its own progress."""

from __future__ import annotations

from core.runtime import PerStepProgress, StepBars


def test_each_step_gets_its_own_bar_counted_in_its_unit(capsys) -> None:
    bars = StepBars("build", enabled=True)
    features = bars.step("features")
    features(0.1, "100/1,000 frames · 10 frames/s")
    features(0.5, "500/1,000 frames")
    assert bars.current.bar.unit == "frames" and bars.current.total == 1000 and bars.current.bar.n == 500
    heads = bars.step("heads")  # closes the features bar; a step without a count draws per mille
    heads(0.25, "mtrn k=2: epoch 10/40")
    assert bars.current.bar.unit == "‰" and bars.current.bar.n == 250
    ingest = bars.step("dataset")
    ingest(0.0, "3/12 segments")
    assert bars.current.bar.unit == "segments" and bars.current.bar.n == 3
    bars.close()
    err = capsys.readouterr().err
    assert "build · features" in err and "build · heads" in err and "build · dataset" in err


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
