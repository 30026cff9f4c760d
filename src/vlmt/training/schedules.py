"""Task schedules: which task(s) to train at each iteration, and the learning-rate decay.

Every task schedule is a small stateful object with one question to answer:

    schedule.next() -> list[(task name, loss weight)]   # the tasks of the next update

plus `state_dict()` / `load_state_dict()` so a checkpoint can resume it mid-cycle, and
`segments()`, the iterations at which the set of active tasks changes (the learning-rate rule of
the hierarchical paper depends on the active tasks). Sizes and ratios come in as arguments; the
schedules know nothing about configs, models or data.

- `PeriodicSchedule`: Algorithm 1 of the hierarchical paper. With `alpha_i = iter_i / sum(iter)`
  each cycle of C iterations gives task i `C * alpha_i` consecutive updates, in task order;
  `floor(sum(iter) / C)` cycles make up the run. Each task's loss is scaled by its weight
  (the task's `loss_weight`, default 1).
- `CurriculumSchedule`: the paper's curriculum (Sec. 4.1): stages of growing task sets (single
  task, then pairs, then all), each stage trained with the periodic schedule on its own tasks
  for its own `sum(iter_i)` iterations.
- `WeightedJointSchedule`: SVLR's joint training, every task in every update with fixed weights
  (`L = a_ans L_ans + a_obj L_obj + a_atr L_atr`).
- `StepDecay`: learning-rate factor `gamma ** (iterations since the segment start // step)`,
  with one step size per segment (hierarchical: `sum(step_i)` over the active tasks; SVLR: a
  fixed N).
"""

from __future__ import annotations

from typing import Protocol, Sequence


class TaskSchedule(Protocol):
    """What the trainer needs from a schedule."""

    @property
    def length(self) -> int | None:
        """Iterations of the schedule as defined (None: open-ended)."""
        ...

    def next(self) -> list[tuple[str, float]]: ...
    def segments(self) -> list[tuple[int, list[str]]]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def _check_names(names: Sequence[str]) -> list[str]:
    names = list(names)
    if not names:
        raise ValueError("a schedule needs at least one task")
    if len(set(names)) != len(names):
        raise ValueError(f"task names repeat: {names}")
    return names


def periodic_block(names: Sequence[str], iterations: Sequence[int], cycle: int) -> list[str]:
    """One cycle of Algorithm 1: task i repeated round(C * alpha_i) times, in order.

    C * alpha_i is rounded to the nearest integer (the paper leaves fractions open); a task whose
    share rounds to zero would never be trained, so that is an error.
    """
    names = _check_names(names)
    if len(iterations) != len(names):
        raise ValueError("one iteration count per task is needed")
    if cycle < 1:
        raise ValueError(f"cycle C must be >= 1, got {cycle}")
    if any(n < 1 for n in iterations):
        raise ValueError(f"iterations must be >= 1, got {list(iterations)}")
    total = sum(iterations)
    block: list[str] = []
    for name, n in zip(names, iterations):
        count = int(round(cycle * n / total))
        if count < 1:
            raise ValueError(f"task {name!r} gets C * alpha = {cycle} * {n}/{total} < 0.5 updates per "
                             f"cycle; raise the cycle length C or its iterations")
        block += [name] * count
    return block


class PeriodicSchedule:
    """Algorithm 1: cycles of `C * alpha_i` consecutive updates per task, `floor(sum(iter)/C)` cycles.

    Past its length the cycles simply repeat (a run asked to train longer keeps switching).
    `weights` (default 1 each) multiply each task's loss; Algorithm 1 has none, but with one
    optimizer state shared by the tasks a weight sets how large a task's gradients are beside the
    others' (see docs/hierarchical_experiments.md).
    """

    def __init__(self, names: Sequence[str], iterations: Sequence[int], *, cycle: int,
                 weights: dict[str, float] | None = None):
        self.names = _check_names(names)
        self.weights = {n: float((weights or {}).get(n, 1.0)) for n in self.names}
        self.block = periodic_block(self.names, iterations, cycle)
        num_cycles = sum(iterations) // cycle
        if num_cycles < 1:
            raise ValueError(f"sum of iterations {sum(iterations)} is shorter than one cycle C = {cycle}")
        self.length = num_cycles * len(self.block)
        self.position = 0

    def next(self) -> list[tuple[str, float]]:
        name = self.block[self.position % len(self.block)]
        self.position += 1
        return [(name, self.weights[name])]

    def segments(self) -> list[tuple[int, list[str]]]:
        return [(0, list(self.names))]

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


def default_stages(names: Sequence[str]) -> list[list[str]]:
    """Grow the task set one task at a time: [a], [a, b], [a, b, c]."""
    names = _check_names(names)
    return [names[: k + 1] for k in range(len(names))]


class CurriculumSchedule:
    """Stages of growing task sets; stage s runs Algorithm 1 on its tasks for its own length.

    `iterations` maps every task to its `#iter_i`; a stage's length is that of the periodic
    schedule on its tasks (`floor(sum(iter_i) / C)` cycles). The last stage repeats past its end.
    """

    def __init__(self, stages: Sequence[Sequence[str]], iterations: dict[str, int], *, cycle: int,
                 weights: dict[str, float] | None = None):
        if not stages:
            raise ValueError("a curriculum needs at least one stage")
        self.stages = [PeriodicSchedule(stage, [iterations[n] for n in stage], cycle=cycle, weights=weights)
                       for stage in stages]
        self.starts: list[int] = []
        start = 0
        for stage in self.stages:
            self.starts.append(start)
            start += stage.length
        self.length = start
        self.position = 0

    def _stage_index(self, position: int) -> int:
        index = 0
        for s, start in enumerate(self.starts):
            if position >= start:
                index = s
        return index

    def next(self) -> list[tuple[str, float]]:
        s = self._stage_index(self.position)
        stage = self.stages[s]
        stage.position = self.position - self.starts[s]
        self.position += 1
        return stage.next()

    def segments(self) -> list[tuple[int, list[str]]]:
        return [(start, list(stage.names)) for start, stage in zip(self.starts, self.stages)]

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


class WeightedJointSchedule:
    """Every task in every update, each with its fixed loss weight (SVLR joint training)."""

    def __init__(self, weights: dict[str, float]):
        self.names = _check_names(list(weights))
        self.weights = {n: float(w) for n, w in weights.items()}
        self.length = None
        self.position = 0

    def next(self) -> list[tuple[str, float]]:
        self.position += 1
        return [(n, self.weights[n]) for n in self.names]

    def segments(self) -> list[tuple[int, list[str]]]:
        return [(0, list(self.names))]

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


class StepDecay:
    """Learning-rate factor: `gamma ** ((iteration - start) // step)` within each segment.

    `segments` is a list of (start iteration, step size); each segment restarts the decay (a new
    curriculum stage is a new Algorithm 1 run with its own `#step`). The factor depends only on
    the iteration, so resuming needs no state beyond the iteration count.
    """

    def __init__(self, segments: Sequence[tuple[int, int]], *, gamma: float = 0.5):
        if not segments or segments[0][0] != 0:
            raise ValueError("the first segment must start at iteration 0")
        if any(step < 1 for _, step in segments):
            raise ValueError("step sizes must be >= 1")
        self.segments = [(int(a), int(b)) for a, b in segments]
        self.gamma = gamma

    def factor(self, iteration: int) -> float:
        """Multiplier of the base learning rate for the update with 0-based index `iteration`."""
        start, step = self.segments[0]
        for s, st in self.segments:
            if iteration >= s:
                start, step = s, st
        return self.gamma ** ((iteration - start) // step)

    def state_dict(self) -> dict:
        return {"segments": [list(s) for s in self.segments], "gamma": self.gamma}

    def load_state_dict(self, state: dict) -> None:
        if [tuple(s) for s in state["segments"]] != self.segments or state["gamma"] != self.gamma:
            raise ValueError("the learning-rate schedule differs from the checkpoint's")
