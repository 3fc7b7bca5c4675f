"""Running per-size sums for the per-size form of the Shapley value

    ESV_i = (1/n) sum_{t=1..n} ( E[v(S) | |S| = t, i in S] - E[v(S) | |S| = t-1, i not in S] )

(a uniformly drawn t-subset containing i is a uniformly drawn (t-1)-subset without
i, plus i). Sampling approximators average each expectation over the drawn subsets.
"""

from __future__ import annotations

import torch


class ShapleyAccumulator:
    """Running sums of v over subsets with/without each frame, per subset size.

    Args:
        n: number of frames.
        priors: ``(C,)`` float64, v(empty).
    """

    def __init__(self, n: int, priors: torch.Tensor) -> None:
        c = priors.shape[0]
        dev = priors.device
        self.n = n
        # index t = subset size 0..n
        self.with_sum = torch.zeros(n + 1, n, c, dtype=torch.float64, device=dev)
        self.with_cnt = torch.zeros(n + 1, n, dtype=torch.float64, device=dev)
        self.without_sum = torch.zeros(n + 1, n, c, dtype=torch.float64, device=dev)
        self.without_cnt = torch.zeros(n + 1, n, dtype=torch.float64, device=dev)
        self.without_sum[0] = priors
        self.without_cnt[0] = 1.0

    def add(self, size: int, combos: torch.Tensor, values: torch.Tensor) -> None:
        """Add ``values`` ``(N, C)`` = v of subsets ``combos`` ``(N, size)``."""
        member = torch.zeros(combos.shape[0], self.n, dtype=torch.float64, device=values.device)
        member.scatter_(1, combos, 1.0)
        inside = member.T @ values  # (n, C)
        count_in = member.sum(dim=0)
        self.with_sum[size] += inside
        self.with_cnt[size] += count_in
        self.without_sum[size] += values.sum(dim=0) - inside
        self.without_cnt[size] += combos.shape[0] - count_in

    def values(self) -> torch.Tensor:
        """``(n, C)`` ESVs. A size whose expectation has no drawn subset for a frame
        is left out of that frame's average (only possible when sampling)."""
        with_mean = self.with_sum[1:] / self.with_cnt[1:].clamp(min=1)[..., None]
        without_mean = self.without_sum[:-1] / self.without_cnt[:-1].clamp(min=1)[..., None]
        valid = ((self.with_cnt[1:] > 0) & (self.without_cnt[:-1] > 0)).to(torch.float64)  # (n, n)
        diffs = (with_mean - without_mean) * valid[..., None]
        return diffs.sum(dim=0) / valid.sum(dim=0).clamp(min=1)[:, None]
