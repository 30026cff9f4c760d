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
- `CurriculumSchedule`: the paper's curriculum (Sec. 4.1): stages of task sets (single tasks,
  then pairs, then all), each stage trained with the periodic schedule on its own tasks. How
  long a stage runs is a reading of the paper (`budget`): `full`, Sec. 4.2 to the letter, gives
  each stage its own `sum(iter_i)`, so a task is trained for its `#iter_i` again in every stage it
  is part of; `shared` divides each task's `#iter_i` over the stages it is part of, so a task gets
  its `#iter_i` updates in all (see docs/training.md, "Curriculum").
- `WeightedJointSchedule`: SVLR's joint training, every task in every update with fixed weights
  (`L = a_ans L_ans + a_obj L_obj + a_atr L_atr`).
- `StepDecay`: learning-rate factor `gamma ** (iterations since the segment start // step)`,
  with one step size per segment (hierarchical: `sum(step_i)` over the active tasks; SVLR: a
  fixed N); or, with `style="continuous"`, the same exponent without the floor.
"""

from __future__ import annotations

import copy
import itertools
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


def growing_stages(names: Sequence[str]) -> list[list[str]]:
    """Grow the task set one task at a time: [a], [a, b], [a, b, c]."""
    names = _check_names(names)
    return [names[: k + 1] for k in range(len(names))]


def subset_stages(names: Sequence[str]) -> list[list[str]]:
    """Every single task, then every pair, ..., then all: [a], [b], [c], [a, b], [a, c], [b, c],
    [a, b, c] (each size in task order)."""
    names = _check_names(names)
    return [list(c) for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]


CURRICULA = {"subsets": subset_stages, "growing": growing_stages}
BUDGETS = ("shared", "full")


def stage_shares(stages: Sequence[Sequence[str]], budget: str) -> list[dict[str, float]]:
    """Per stage, the share of each of its tasks' `#iter_i` (and `#step_i`) the stage runs: 1 with
    the `full` budget; 1 / (number of stages the task is in) with the `shared` one."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    appearances: dict[str, int] = {}
    for stage in stages:
        for name in stage:
            appearances[name] = appearances.get(name, 0) + 1
    return [{n: 1.0 if budget == "full" else 1.0 / appearances[n] for n in stage} for stage in stages]


class CurriculumSchedule:
    """Stages of task sets; stage s runs Algorithm 1 on its tasks for its own length.

    `iterations` maps every task to its `#iter_i`; stage s gives task i `round(iter_i * share)`
    of them (`stage_shares`: share 1 with budget `full`, 1 / stages-with-i with `shared`) and
    runs the periodic schedule on those (`floor(sum / C)` cycles). The last stage repeats past
    its end.
    """

    def __init__(self, stages: Sequence[Sequence[str]], iterations: dict[str, int], *, cycle: int,
                 weights: dict[str, float] | None = None, budget: str = "full"):
        if not stages:
            raise ValueError("a curriculum needs at least one stage")
        self.shares = stage_shares(stages, budget)
        self.stages: list[PeriodicSchedule] = []
        for names, shares in zip(stages, self.shares):
            counts = [max(1, round(iterations[n] * shares[n])) for n in names]
            self.stages.append(PeriodicSchedule(names, counts, cycle=cycle, weights=weights))
        self.starts: list[int] = []
        start = 0
        for periodic in self.stages:
            self.starts.append(start)
            start += periodic.length
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


def update_counts(schedule: TaskSchedule, iterations: int) -> dict[str, int]:
    """How many updates each task gets in the first `iterations` of a fresh copy of `schedule`
    (what a run will do; the trainer prints it at the start)."""
    probe = copy.deepcopy(schedule)
    probe.load_state_dict({"position": 0})
    counts: dict[str, int] = {}
    for _ in range(iterations):
        for name, _weight in probe.next():
            counts[name] = counts.get(name, 0) + 1
    return counts


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
    curriculum stage is a new Algorithm 1 run with its own `#step`). `style="continuous"` gives
    `gamma ** ((iteration - start) / step)` instead (TensorFlow's `exponential_decay` without
    `staircase`). The factor depends only on the iteration, so resuming needs no state beyond the
    iteration count.
    """

    STYLES = ("staircase", "continuous")

    def __init__(self, segments: Sequence[tuple[int, int]], *, gamma: float = 0.5,
                 style: str = "staircase"):
        if not segments or segments[0][0] != 0:
            raise ValueError("the first segment must start at iteration 0")
        if any(step < 1 for _, step in segments):
            raise ValueError("step sizes must be >= 1")
        if style not in self.STYLES:
            raise ValueError(f"style must be one of {', '.join(self.STYLES)}, got {style!r}")
        self.segments = [(int(a), int(b)) for a, b in segments]
        self.gamma = gamma
        self.style = style

    def factor(self, iteration: int) -> float:
        """Multiplier of the base learning rate for the update with 0-based index `iteration`."""
        start, step = self.segments[0]
        for s, st in self.segments:
            if iteration >= s:
                start, step = s, st
        if self.style == "continuous":
            return self.gamma ** ((iteration - start) / step)
        return self.gamma ** ((iteration - start) // step)

    def state_dict(self) -> dict:
        return {"segments": [list(s) for s in self.segments], "gamma": self.gamma, "style": self.style}

    def load_state_dict(self, state: dict) -> None:
        # checkpoints written before `style` existed used the staircase
        if ([tuple(s) for s in state["segments"]] != self.segments or state["gamma"] != self.gamma
                or state.get("style", "staircase") != self.style):
            raise ValueError("the learning-rate schedule differs from the checkpoint's")
