"""Charts as files: SVG and PNG through vl-convert, and titled copies for export.
No Streamlit here."""

from __future__ import annotations

import copy
import io
from typing import Any, Union

import altair as alt
from PIL import Image, PngImagePlugin


Chart = Union[alt.TopLevelMixin, dict[str, Any]]  # an Altair chart or a Vega-Lite spec (app.charts.esv.Spec)


def _spec(chart: Chart) -> dict[str, Any]:
    return copy.deepcopy(chart) if isinstance(chart, dict) else chart.to_dict()


def chart_svg(chart: Chart) -> bytes:
    """The chart as standalone SVG (rendered by vl-convert, no browser)."""
    import vl_convert as vlc  # loaded on first export only: its JS engine takes a moment to start

    return vlc.vegalite_to_svg(_spec(chart)).encode("utf-8")


def chart_png(chart: Chart, metadata: dict[str, Any] | None = None, *, scale: float = 2.0) -> bytes:
    """The chart as PNG (vl-convert) with ``metadata`` written into PNG text chunks."""
    import vl_convert as vlc  # see chart_svg

    raw = vlc.vegalite_to_png(_spec(chart), scale=scale)
    if not metadata:
        return raw
    info = PngImagePlugin.PngInfo()
    for k, v in metadata.items():
        info.add_text(str(k), str(v))
    out = io.BytesIO()
    Image.open(io.BytesIO(raw)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def titled(chart: Chart, title: str, subtitle: str) -> dict[str, Any]:
    """The spec of ``chart`` (an Altair chart or a spec dict) with a title and a subtitle
    line (exports name what they show)."""
    spec = _spec(chart)
    spec["title"] = {"text": title, "subtitle": subtitle, "anchor": "start"}
    spec.setdefault("width", 640)
    return spec
