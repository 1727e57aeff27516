"""A plan's memory over a range of contexts or concurrencies (`vramplan estimate --sweep`).

`sweep(Request, axis)` plans the request at each value of a grid (powers of two: contexts from 1024 to
the model's maximum, concurrencies from 1 up past the largest that fits) and adds the largest value
that fits (the estimator's own inverse solver) as a point of its own, so a picture shows where the
plan stops fitting. Each point keeps the fullest GPU's parts (or the host's, for a CPU plan).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vramplan.errors import PlanError
from vramplan.estimate import DeviceUse, Estimate, Request, estimate

AXES = ("context", "concurrency")
FIRST_CONTEXT = 1024  # the smallest context of the grid: below it a chat turn does not fit anyway
# The concurrency grid goes up to the first power of two past the largest that fits, at least this far
# (a picture with a few rows) and at most MAX_CONCURRENCY (a screen of rows).
MIN_TOP_CONCURRENCY = 8
MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class SweepPoint:
    """The plan at one value of the swept axis: its fullest device, and whether it fits."""

    value: int
    device: DeviceUse  # the fullest GPU (the host for a CPU plan)
    host: DeviceUse
    fits: bool | None
    limit: bool = False  # the largest value that fits
    per_gpu: tuple[DeviceUse, ...] = ()  # every GPU of the plan


@dataclass(frozen=True)
class Sweep:
    """The plan at the user's settings, and the points of the sweep, smallest value first."""

    axis: str
    plan: Estimate
    points: tuple[SweepPoint, ...]
    largest: int | None  # the largest value that fits (None: no capacity known); 0: none fits
    top: int  # the largest value the axis may take (the model's maximum context, or the grid's end)
    top_is: str = "the sweep's last"  # what `top` is, in words

    @property
    def capacity_bytes(self) -> int | None:
        """What the plan may fill of the device drawn (the same at every point)."""
        return self.points[0].device.usable_bytes if self.points else None


def _powers(first: int, last: int) -> list[int]:
    out, n = [], first
    while n < last:
        out.append(n)
        n *= 2
    return [*out, last]


def _fullest(e: Estimate) -> DeviceUse:
    return max(e.per_gpu, key=lambda d: d.total_bytes) if e.per_gpu else e.host


def _point(e: Estimate, value: int, limit: bool = False) -> SweepPoint:
    return SweepPoint(value, _fullest(e), e.host, e.fits, limit, e.per_gpu)


def grid(axis: str, plan: Estimate, req: Request, model_max: int) -> list[int]:
    """The values a sweep plans at (before the largest that fits is added)."""
    if axis == "context":
        return _powers(min(FIRST_CONTEXT, model_max), model_max)
    largest = plan.max_concurrency
    top = MAX_CONCURRENCY if largest is None else largest + 1
    top = min(max(1 << (top - 1).bit_length(), MIN_TOP_CONCURRENCY), MAX_CONCURRENCY)
    if req.max_num_seqs is not None:
        top = min(top, req.max_num_seqs)  # vLLM runs no more at once
    return _powers(1, top)


def sweep(req: Request, axis: str) -> Sweep:
    """Plan `req` at each value of the grid of `axis` ("context" or "concurrency")."""
    if axis not in AXES:
        raise PlanError(f"--sweep takes {' or '.join(AXES)}, got {axis!r}")
    plan = estimate(req)
    model_max = req.variant.architecture.max_position_embeddings
    values = grid(axis, plan, req, model_max)

    def at(value: int) -> Estimate:
        r = (
            replace(req, context=value)
            if axis == "context"
            else replace(req, context=plan.context, concurrency=value)
        )
        return estimate(r, solve_context=False, solve_concurrency=False)

    largest = plan.max_context if axis == "context" else plan.max_concurrency
    points = [_point(at(v), v, limit=v == largest) for v in values]
    if largest and largest < values[-1] and largest not in values:
        points.append(_point(at(largest), largest, limit=True))
        points.sort(key=lambda p: p.value)
    if axis == "context":
        top, top_is = model_max, "the model's maximum"
    elif req.max_num_seqs is not None and values[-1] == req.max_num_seqs:
        top, top_is = req.max_num_seqs, "--max-num-seqs"
    else:
        top, top_is = values[-1], "the sweep's last"
    return Sweep(axis, plan, tuple(points), largest, top, top_is)
