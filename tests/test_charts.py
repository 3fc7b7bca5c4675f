"""app/charts/: the pages' pure chart, image and table helpers, without Streamlit."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pytest

from app import charts
from app.charts import images

ROOT = Path(__file__).resolve().parents[1]


def _valid(chart: alt.TopLevelMixin | dict) -> dict:
    """The chart's Vega-Lite spec, schema-checked (raises on an invalid spec); a spec dict
    (the template-built charts) is checked as it is."""
    if isinstance(chart, dict):
        alt.LayerChart.from_dict(chart, validate=True)
        return chart
    return chart.to_dict(validate=True)


def _rows(spec: dict) -> list[dict]:
    """Every inline dataset row of a Vega-Lite spec."""
    return [row for rows in spec.get("datasets", {}).values() for row in rows]


@pytest.mark.parametrize("module", sorted(p.name for p in (ROOT / "app" / "charts").glob("*.py")))
def test_charts_modules_do_not_import_streamlit(module: str) -> None:
    tree = ast.parse((ROOT / "app" / "charts" / module).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [n for n in names if n.split(".")[0] == "streamlit"]


def test_template_charts_are_plain_specs() -> None:
    """The template-built charts are plain Vega-Lite dicts (no Altair subclass), a copy each call."""
    table = charts.esv_frame_table([0.1, -0.2], [0, 5], clip="a")
    a, b = charts.esv_bar_chart(table), charts.esv_bar_chart(table)
    assert type(a) is dict and a == b and a is not b
    a["layer"].clear()
    assert charts.esv_bar_chart(table) == b
    assert type(charts.topk_chart(charts.topk_rows([0.7, 0.3], ["a", "b"], k=2, explained=0))) is dict


def test_esv_frame_table_rows_and_errors() -> None:
    t = charts.esv_frame_table([0.5, -0.25, 0.0], [2, 7, 11], clip="P01_01_3")
    assert list(t["position"]) == [1, 2, 3] and list(t["frame"]) == [2, 7, 11]
    assert list(t["sign"]) == ["supports", "opposes", "supports"]
    assert list(t["label"]) == ["1 · #2", "2 · #7", "3 · #11"] and set(t["clip"]) == {"P01_01_3"}
    with pytest.raises(ValueError, match="2 ESVs for 3 frames"):
        charts.esv_frame_table([0.1, 0.2], [1, 2, 3])


def test_esv_bar_chart_swaps_rows_into_one_template() -> None:
    a = charts.esv_bar_chart(charts.esv_frame_table([0.1, -0.2], [0, 5], clip="a"), description="ESVs")
    b = charts.esv_bar_chart(charts.esv_frame_table([0.3, 0.4, -0.1], [1, 2, 3], clip="b"), description="ESVs")
    assert [r["clip"] for r in a["datasets"][charts.ESV_DATA]] == ["a", "a"]
    assert [r["esv"] for r in b["datasets"][charts.ESV_DATA]] == [0.3, 0.4, -0.1]
    assert a["description"] == "ESVs"
    assert {k: v for k, v in a.items() if k != "datasets"} == {k: v for k, v in b.items() if k != "datasets"}
    alt.LayerChart.from_dict(b, validate=True)
    unselectable = charts.esv_bar_chart(charts.esv_frame_table([0.1], [0]), selectable=False)
    assert "params" not in unselectable


def test_selected_position() -> None:
    sel = charts.FRAME_SELECTION
    assert charts.selected_position(None) is None
    assert charts.selected_position({"selection": {sel: []}}) is None
    assert charts.selected_position({"selection": {sel: [{"position": 4}]}}) == 4
    assert charts.selected_position({"selection": {sel: {"position": []}}}) is None

    class Event:
        selection = {sel: [{"position": 2}]}

    assert charts.selected_position(Event()) == 2


def test_tables() -> None:
    top = charts.topk_table([(3, "open", 0.7), (1, "close", 0.2)])
    assert list(top.columns) == ["class", "id", "probability"] and list(top["class"]) == ["open", "close"]
    assert charts.topk_table([]).empty
    clips = pd.DataFrame({"verb": ["open"], "noun": ["fridge"], "split": ["val"]}, index=["c1"])
    assert charts.clip_labels(clips, ["verb", "noun"]) == {"c1": "c1 · open fridge (val)"}
    assert charts.clip_labels(clips, ["noun"]) == {"c1": "c1 · fridge (val)"}
    summary = pd.DataFrame([
        {"method": "exact", "error": 0.0, "error_std": 0.0, "spearman": 1.0, "top1": 1.0, "top3": 1.0,
         "efficiency_gap": 0.0, "seconds": 0.01, "head_evaluations": 255},
        {"method": "approximate", "error": 1.5e-3, "error_std": 2e-4, "spearman": 0.9, "top1": 0.8, "top3": 1.0,
         "efficiency_gap": -3e-3, "seconds": 0.002, "head_evaluations": 64},
    ])
    table = charts.comparison_table(summary)
    assert list(table.columns) == ["exact", "approximate"]
    assert table.loc["|efficiency gap|", "approximate"] == "3.0e-03"  # absolute value
    assert table.loc["top-1 frame agreement", "approximate"] == "80%"
    assert table.loc["head evaluations", "exact"] == "255"


def test_comparison_and_sweep_charts_are_valid() -> None:
    per_frame = pd.DataFrame({
        "label": ["1 · #0", "2 · #4"] * 2, "method": ["exact"] * 2 + ["approximate"] * 2,
        "esv": [0.1, 0.2, 0.12, 0.18], "lo": [0.1, 0.2, 0.1, 0.15], "hi": [0.1, 0.2, 0.14, 0.21],
    })
    _valid(charts.comparison_chart(per_frame))
    sweep = pd.DataFrame({
        "samples_per_scale": [1, 2, 6], "head_evaluations": [10, 20, 40], "error": [0.1, 0.01, 0.0],
        "error_lo": [0.05, 0.005, 0.0], "error_hi": [0.2, 0.02, 0.0], "exact_evaluations": 40,
    })
    spec = _valid(charts.sweep_chart(sweep))
    rows = _rows(spec)
    # zero error (saturated = exact) drawn at a floor 1000x below the smallest positive error on the log axis
    assert min(r["error_plot"] for r in rows if "error_plot" in r) == pytest.approx(1e-5)
    assert any("x" in r and r["x"] == 40.0 for r in rows)  # the exact cost rule
    all_zero = sweep.assign(error=0.0, error_lo=0.0, error_hi=0.0).drop(columns="exact_evaluations")
    _valid(charts.sweep_chart(all_zero))


def test_overview_charts_are_valid() -> None:
    acc = pd.DataFrame({"n_frames": [1, 2], "accuracy": [0.5, 0.7], "task": "verb", "model": "mtrn",
                        "model_name": "multiscale TRN", "series": "verb · multiscale TRN"})
    _valid(charts.accuracy_chart(acc))
    # every family in the table gets its own colour and legend entry (not only the three trained everywhere)
    names = ["multiscale TRN", "TSN", "temporal transformer", "C1 TRN (released)", "gru"]
    many = pd.DataFrame({"n_frames": 1, "accuracy": 0.5, "task": "verb", "model": names, "model_name": names,
                         "series": [f"verb · {n}" for n in names]})
    scale = _valid(charts.accuracy_chart(many))["encoding"]["color"]["scale"]
    assert set(scale["domain"]) == set(names) and len(set(scale["range"])) == len(names)
    assert scale["range"][scale["domain"].index("multiscale TRN")] == "#4c78a8"
    # the tasks' line styles are named in the title, in the dash scale's order
    two = pd.concat([acc, acc.assign(task="noun", series="noun · multiscale TRN")])
    spec = _valid(charts.accuracy_chart(two))
    dash = spec["encoding"]["strokeDash"]["scale"]
    assert dash["domain"] == ["verb", "noun"] and dash["range"][:2] == [[1, 0], [6, 4]]
    assert spec["title"]["text"] == "line style per task: verb: solid, noun: dashed"
    pos = pd.DataFrame({"position": [1, 2, 1, 2], "esv": [0.1, 0.2, 0.0, 0.3], "task": ["verb"] * 4})
    _valid(charts.position_chart(pos))
    _valid(charts.position_chart(pos.drop(columns="task")))
    sweep = pd.DataFrame({"n_frames": [1, 2, 2], "position": [1, 1, 2], "frame": [3, 1, 5], "esv": [0.2, 0.1, -0.1],
                          "sign": ["supports", "supports", "opposes"]})
    _valid(charts.frames_sweep_chart(sweep))
    summary = pd.DataFrame({"class": ["open", "close"], "mean_esv_sum": [0.3, -0.1]})
    spec = _valid(charts.class_summary_chart(summary, value="mean_esv_sum", title="mean"))
    assert [r["sign"] for r in _rows(spec)] == ["supports", "opposes"]


def test_method_charts_are_valid_and_filter_their_rows() -> None:
    scores = pd.DataFrame({
        "label": ["ESV"] * 2 + ["random"] * 2, "position": [1, 2, 1, 2], "frame": [0, 4, 0, 4],
        "score": [0.3, -0.1, 0.5, 0.2], "rank": [1, 2, 1, 2], "top": [True, False, True, False], "in_key": [True, False] * 2,
    })
    spec = _valid(charts.method_scores_chart(scores, "random"))
    assert [r["score"] for r in _rows(spec)] == [0.5, 0.2]
    curves = pd.DataFrame({
        "curve": ["deletion"] * 2 + ["insertion"] * 2, "method": ["esv"] * 4, "label": ["ESV"] * 4,
        "fraction": [0.0, 1.0] * 2, "k": [0, 2] * 2, "prob": [0.9, 0.1, 0.1, 0.9],
    })
    deletion = _valid(charts.attribution_curve_chart(curves, "deletion", axis_title="removed", legend=True))
    insertion = _valid(charts.attribution_curve_chart(curves, "insertion", axis_title="added", legend=False))
    assert [r["prob"] for r in _rows(deletion)] == [0.9, 0.1]
    assert deletion["height"] == 400 and insertion["height"] == 260


def test_column_formats() -> None:
    assert charts.same_format(["a", "b"], "%.3f") == {"a": ("a", "%.3f"), "b": ("b", "%.3f")}
    for formats in (charts.METHOD_SUMMARY_FORMATS, charts.CLASS_SUMMARY_FORMATS, charts.KEY_FRAME_FORMATS):
        assert all(isinstance(label, str) and fmt.startswith("%") for label, fmt in formats.values())


def test_images() -> None:
    small = np.zeros((4, 6, 3), np.uint8)
    assert charts.upscale(small, 10).shape == (12, 18, 3)  # factor 3: short side 4 -> 12 >= 10
    assert charts.upscale(small, 4) is small
    grey = np.full((16, 16, 3), 100, np.uint8)
    green = charts.tint(grey, 1.0, 1.0)
    assert tuple(green[0, 0]) == (0x1A, 0x98, 0x50)  # solid border in the sign's colour
    assert green[8, 8, 1] > 100 > green[8, 8, 0]
    assert (charts.tint(grey, 0.0, 1.0) == grey).all()  # no evidence, no tint, no border
    assert (charts.tint(grey, np.nan, 1.0) == grey).all()
    half = charts.tint(grey, -0.5, 1.0, border=0)
    assert half[0, 0, 0] > 100 and half[0, 0, 0] < charts.tint(grey, -1.0, 1.0, border=0)[0, 0, 0]
    thumbs = charts.tinted_thumbnails(np.full((2, 8, 8, 3), 128, np.uint8), [0.2, -0.1], min_size=16)
    assert [t.shape for t in thumbs] == [(16, 16, 3)] * 2
    assert thumbs[0][8, 8, 1] > thumbs[0][8, 8, 0] and thumbs[1][8, 8, 0] > thumbs[1][8, 8, 1]
    assert charts.tinted_thumbnails(np.zeros((0, 8, 8, 3), np.uint8), []) == []


def test_tint_keeps_the_frame_visible() -> None:
    grey = np.full((16, 16, 3), 128, np.uint8)
    full = charts.tint(grey, 1.0, 1.0, border=0).astype(float)
    green = np.array(images._hex_rgb(charts.POSITIVE), dtype=float)
    # at the strongest ESV the overlay is at most 25%: the pixel stays within a quarter of the way to the colour
    assert np.all(np.abs(full[8, 8] - 128) <= 0.25 * np.abs(green - 128) + 1)


def test_error_bars_and_tooltip_images() -> None:
    t = charts.esv_frame_table([0.1, -0.2], [0, 5], clip="a")
    t = charts.with_errors(t, [0.01, 0.02])
    assert list(t["lo"]) == pytest.approx([0.09, -0.22]) and list(t["hi"]) == pytest.approx([0.11, -0.18])
    url = charts.image_data_url(np.zeros((8, 8, 3), np.uint8), size=32)
    assert url.startswith("data:image/jpeg;base64,")
    spec = charts.esv_bar_chart(t.assign(image=[url, url]))
    alt.LayerChart.from_dict(spec, validate=True)
    assert [r["hi"] for r in spec["datasets"][charts.ESV_DATA]] == pytest.approx([0.11, -0.18])
    assert any(tt.get("title") == "image" for layer in spec["layer"] for tt in layer.get("encoding", {}).get("tooltip", []) or [])
    assert charts.with_errors(t, None) is t
    with pytest.raises(ValueError, match="1 standard errors for 2 frames"):
        charts.with_errors(t, [0.1])


def test_overlay_and_topk_charts() -> None:
    a = charts.esv_frame_table([0.1, -0.2], [0, 5], clip="c")
    b = charts.esv_frame_table([-0.05, 0.3], [0, 5], clip="c")
    long = charts.overlay_table([("open (explained)", a), ("close", b)])
    assert list(long["class"]) == ["open (explained)"] * 2 + ["close"] * 2
    spec = _valid(charts.esv_overlay_chart(long))
    assert [p["name"] for p in spec["params"]] == [charts.FRAME_SELECTION]
    rows = charts.topk_rows(np.array([0.05, 0.6, 0.3, 0.05]), ["a", "b", "c", "d"], k=2, explained=3, overlays=[2], label=1)
    assert list(rows["id"]) == [1, 2, 3]  # top 2, then the explained class although it ranks lower
    assert list(rows["role"]) == ["other", "overlaid", "explained"] and rows["class"][0] == "b ✓"
    _valid(charts.topk_chart(rows))
    assert charts.selected_class({"selection": {charts.CLASS_SELECTION: [{"id": 2}]}}) == 2
    assert charts.selected_class({"selection": {charts.CLASS_SELECTION: []}}) is None
    assert charts.esv_colors([1.0, -1.0, 0.0]) == [charts.POSITIVE, charts.NEGATIVE, "#c6e5d3"]


@pytest.mark.slow
def test_chart_exports_record_the_settings() -> None:
    from PIL import Image

    chart = charts.titled(charts.esv_bar_chart(charts.esv_frame_table([0.1, -0.2], [0, 5], clip="c")), "ESVs", "dataset demo · clip c")
    svg = charts.chart_svg(chart).decode()
    assert svg.startswith("<svg") and "dataset demo · clip c" in svg
    png = charts.chart_png(chart, {"dataset": "demo", "clip": "c", "seed": "0"})
    assert Image.open(io.BytesIO(png)).text == {"dataset": "demo", "clip": "c", "seed": "0"}
