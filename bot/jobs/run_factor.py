"""The service's run-time factor (run time / prior): the likeliest one given recent runs.

Each run is known only as a bracket (longer than `shortest`, at most `longest`, both over
the prior), and a run is modelled as `factor * U(1 - spread, 1 + spread)`, with a share of
`outliers` outside the model. Candidate factors lie on a lattice, `exp(STEP * n)`: the
search moves from the current factor in strides of 8 % (4 lattice steps), then of 2 %.

Summing every candidate's log-likelihood over the whole window at each completion costs
O(candidates x runs). Here each lattice point within the next search's reach keeps its
runs' terms and their total, brought up to date when a search looks at it: one term per
run kept since (it replaces the evicted run's term in the same slot of the window). A
completion costs one term per candidate (26), a point looked at again after a while one
per run it missed, at most a window's worth, as does a point coming in reach.

Terms are integers, the log-likelihood rounded to a multiple of 2**-40 (100 runs are then
at most 5e-11 from the float sum, far inside the 1e-9 tie tolerance): adding and
subtracting them is exact, so a kept total never drifts, whatever the history, and always
equals the sum over the window's runs computed afresh. Float running totals would drift
with every update and need a periodic recount to bound it.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

STEP = 0.02  # the lattice: factors exp(STEP * n)
SCALE = 2.0**40  # the fixed point: a term is round(log-likelihood * SCALE)
TIE = round(1e-9 * SCALE)  # totals this close to the best are equally likely
# A run e**1000 times outside a factor's window is as unlikely as any: the floor keeps a
# term finite (a 64-bit integer) for whatever bracket a clock produces.
FLOOR = -1000.0
# The search: from the current factor, `reach` strides either way, then around the best
# (x2 either way in strides of 8 %, then 2 %).
SEARCH = ((4, 9), (1, 3))  # (stride in lattice steps, reach)
# How far from the current factor the next search may look, in lattice steps.
IN_REACH = sum(stride * reach for stride, reach in SEARCH)


@dataclass(slots=True)
class _Point:
    """A lattice point: its run-time window, each run's term by its slot in the window
    (0 in slots not used yet), and their total, as of the `synced`-th run kept."""

    low: float
    high: float
    width: float
    terms: array[int]
    total: int = 0
    synced: int = 0


class RunFactor:
    """The likeliest run-time factor given the last `samples` bracketed runs."""

    def __init__(self, *, spread: float, outliers: float, samples: int) -> None:
        self._spread = spread
        self._outliers = outliers
        self._log_outliers = math.log(outliers)
        self._samples = max(1, samples)
        self._runs: list[tuple[float, float]] = []  # a ring once full: `_slot` is the oldest
        self._slot = 0  # where the next run goes
        self._kept = 0  # runs kept so far
        self._index = 0  # the current factor's lattice point: exp(0) = 1, the prior's
        self.value = 1.0
        # The points searched lately, all within IN_REACH: at most 79, a window of 8-byte
        # terms each (63 KB for 100 runs).
        self._points: dict[int, _Point] = {}

    def add(self, shortest: float, longest: float) -> float:
        """Keep a run (over the prior) longer than `shortest`, at most `longest`, in place
        of the oldest one once the window is full; return the likeliest factor now."""
        slot = self._slot
        if len(self._runs) < self._samples:
            self._runs.append((shortest, longest))
        else:
            self._runs[slot] = (shortest, longest)
        self._slot = (slot + 1) % self._samples
        self._kept += 1
        self._search()
        return self.value

    def log_likelihood(self, index: int) -> int:
        """Lattice point `index`'s log-likelihood over the kept runs (in units of 2**-40),
        summed afresh: what its kept total always equals."""
        point = self._point_at(index)
        return sum(self._term(point, shortest, longest) for shortest, longest in self._runs)

    def kept_totals(self) -> dict[int, int]:
        """The kept log-likelihood of each lattice point in reach (units of 2**-40), each
        brought up to date."""
        return {index: self._total(index) for index in self._points}

    def _term(self, point: _Point, shortest: float, longest: float) -> int:
        """One run's log-likelihood under the point's window, in units of 2**-40."""
        low, high = point.low, point.high
        overlap = (high if high < longest else longest) - (low if low > shortest else shortest)
        if overlap > 0:
            term = math.log(self._outliers + overlap / point.width)
        # Outside the window, an outlier: the further out, the less likely (so that far-off
        # factors move). A bracket only touching the window (polls are aimed at its end)
        # misses it by nothing: rated by `low / longest` < 1 there, it would score above
        # one overlapping the window, and neighbouring factors would flip on a rounding.
        elif shortest > high:
            term = self._log_outliers - math.log(shortest / high)
        elif longest < low:
            term = self._log_outliers - math.log(low / (longest if longest > 1e-9 else 1e-9))
        else:
            term = self._log_outliers
        return round((term if term > FLOOR else FLOOR) * SCALE)

    def _point_at(self, index: int) -> _Point:
        factor = math.exp(STEP * index)
        low, high = factor * (1 - self._spread), factor * (1 + self._spread)
        return _Point(low, high, high - low, array("q", bytes(8 * self._samples)))

    def _total(self, index: int) -> int:
        """The point's total over the kept runs, brought up to date with the runs kept
        since it was last looked at (all of them for a point coming in reach)."""
        point = self._points.get(index)
        if point is None:
            point = self._points[index] = self._point_at(index)
        missed = self._kept - point.synced
        if missed == 0:
            return point.total
        runs, terms = self._runs, point.terms
        if missed >= len(runs):  # every run in the window is new to it
            for slot, (shortest, longest) in enumerate(runs):
                terms[slot] = self._term(point, shortest, longest)
            point.total = sum(terms)
        else:  # the runs it missed went to the slots before the next one, in turn
            for back in range(missed, 0, -1):
                slot = (self._slot - back) % self._samples
                shortest, longest = runs[slot]
                term = self._term(point, shortest, longest)
                point.total += term - terms[slot]
                terms[slot] = term
        point.synced = self._kept
        return point.total

    def _search(self) -> None:
        """Move to the likeliest lattice point near the current one; of equally likely
        ones, the middle one (runs found done at once bound the factor from above only:
        all factors below fit them, and the middle aims the next polls early enough to
        bracket a run from both sides)."""
        best = was = self._index
        for stride, reach in SEARCH:
            centre = best
            offsets = range(-reach, reach + 1)
            totals = [self._total(centre + stride * k) for k in offsets]
            top = max(totals)
            ties = [k for k, total in zip(offsets, totals, strict=True) if total >= top - TIE]
            move = ties[len(ties) // 2]
            best = centre + stride * move
            # Moved by the stride's factor rather than taken as exp(STEP * best) (the two
            # differ by rounding only): the same float, to the bit, as a search summing
            # every candidate over the window from the same start gives.
            self.value *= math.exp(STEP * stride * move)
        if best == was:
            return
        self._index = best
        # Drop the points the next search cannot reach (all were within reach of `was`).
        if best > was:
            gone = range(was - IN_REACH, best - IN_REACH)
        else:
            gone = range(best + IN_REACH + 1, was + IN_REACH + 1)
        for index in gone:
            self._points.pop(index, None)
