"""Explanatory text the pages show (kept apart so every page words it the same way)."""

from __future__ import annotations

from typing import Sequence

PAPER = ("Will Price and Dima Damen, *Play Fair: Frame Attributions in Video Models*, "
         "ACCV 2020")

ESV_HELP = f"""
**Element Shapley Value (ESV)** of a sampled frame: how much that frame moves the model's
probability of the explained class, averaged fairly over every subset of the other sampled
frames it could join (its Shapley value in the game whose players are the frames).

- **The game.** v(S) = the model's softmax probability of the class given only the frames
  in S (in temporal order); for the multiscale TRN, the mean of its single-scale heads over
  every subset of S they fit. With no frame at all, **v(∅) = the class prior** (its
  frequency in the training split).
- **Efficiency.** The ESVs add up exactly to *p(all frames) − prior*: the page checks
  this under the chart ("Σ ESV = p − prior").
- **Reading the bars.** A positive (green) bar: the frame adds evidence *for* the class;
  negative (red): it pulls the probability down (evidence for something else). Size is in
  probability units. Overlay a second class to see which frames separate the two.
- **Colours, the same in every chart.** Green: a frame that supports the class (ESV > 0);
  red: one that opposes it (ESV < 0) — in the single-class ESV chart, the video strip and
  the thumbnails' borders. When classes are compared (overlays), colour names the class
  instead: blue is the explained class, each overlaid class keeps one colour in the ESV
  chart and in the top-10 charts (orange for the first, then purple, teal, brown, yellow);
  grey: classes that are not shown.
- **Exact or approximate.** Exact ESVs evaluate every subset of the n frames (2ⁿ subsets;
  interactive up to 16 frames). Approximate methods (the paper's constructive sampler, the
  additive surrogate, KernelSHAP, leave-one-out) spend a budget of head evaluations and are
  labelled as such; whiskers show ± 1 standard error where the method estimates one.
  Settings that would draw every subset anyway run the exact path and say so.

Reference: {PAPER}.
"""


def and_list(words: Sequence[str]) -> str:
    """Words in running text, for labels naming a dataset's tasks: ``["a"]`` -> "a",
    ``["a", "b"]`` -> "a and b", ``["a", "b", "c"]`` -> "a, b and c"."""
    words = [str(w) for w in words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
