"""Exact sequences of the task schedules and the learning-rate decay."""

from __future__ import annotations

import pytest

from vlmt.training.schedules import (
    CurriculumSchedule,
    PeriodicSchedule,
    StepDecay,
    WeightedJointSchedule,
    default_stages,
    periodic_block,
)


def names(schedule, n):
    return [item[0][0] for item in (schedule.next() for _ in range(n))]


def test_algorithm_1_cycle_and_length():
    # iter = (60, 40), C = 10: alpha = (0.6, 0.4) -> 6 x a, 4 x b per cycle; floor(100 / 10) = 10 cycles
    s = PeriodicSchedule(["a", "b"], [60, 40], cycle=10)
    assert s.length == 100
    assert names(s, 20) == ["a"] * 6 + ["b"] * 4 + ["a"] * 6 + ["b"] * 4
    assert s.next() == [("a", 1.0)]


def test_algorithm_1_three_tasks_and_rounding():
    assert periodic_block(["r", "q", "g"], [1, 2, 1], 8) == ["r"] * 2 + ["q"] * 4 + ["g"] * 2
    # C * alpha = 10/3 -> 3, 20/3 -> 7
    assert periodic_block(["a", "b"], [1, 2], 10) == ["a"] * 3 + ["b"] * 7
    with pytest.raises(ValueError, match="< 0.5 updates per cycle"):
        periodic_block(["a", "b"], [1, 100], 10)
    with pytest.raises(ValueError, match="shorter than one cycle"):
        PeriodicSchedule(["a"], [5], cycle=10)


def test_periodic_state_resumes_mid_cycle():
    s = PeriodicSchedule(["a", "b"], [3, 2], cycle=5)
    first = names(s, 7)
    state = s.state_dict()
    rest = names(s, 6)
    t = PeriodicSchedule(["a", "b"], [3, 2], cycle=5)
    t.load_state_dict(state)
    assert first == list("aaabbaa") and names(t, 6) == rest == list("abbaaa")


def test_curriculum_single_then_pairs_then_all():
    stages = default_stages(["a", "b", "c"])
    assert stages == [["a"], ["a", "b"], ["a", "b", "c"]]
    s = CurriculumSchedule(stages, {"a": 4, "b": 2, "c": 2}, cycle=4)
    # stage 1: a alone, floor(4/4) = 1 cycle of 4; stage 2: a:b = 4:2 -> 3 a + 1 b per cycle, 1 cycle
    # stage 3: 4:2:2 -> 2 a + 1 b + 1 c, floor(8/4) = 2 cycles
    assert s.length == 4 + 4 + 8
    assert [start for start, _ in s.segments()] == [0, 4, 8]
    assert names(s, 16) == list("aaaa") + list("aaab") + list("aabc") * 2
    assert names(s, 4) == list("aabc")  # the last stage continues past the end
    t = CurriculumSchedule(stages, {"a": 4, "b": 2, "c": 2}, cycle=4)
    t.load_state_dict({"position": 6})
    assert names(t, 4) == list("abaa")


def test_periodic_and_curriculum_scale_each_task_by_its_loss_weight():
    s = PeriodicSchedule(["a", "b"], [1, 1], cycle=2, weights={"a": 1.0, "b": 7.5})
    assert [s.next() for _ in range(3)] == [[("a", 1.0)], [("b", 7.5)], [("a", 1.0)]]
    c = CurriculumSchedule([["a"], ["a", "b"]], {"a": 2, "b": 2}, cycle=2, weights={"b": 0.25})
    assert [c.next()[0] for _ in range(4)] == [("a", 1.0), ("a", 1.0), ("a", 1.0), ("b", 0.25)]


def test_weighted_joint_returns_every_task_with_its_weight():
    s = WeightedJointSchedule({"ans": 1.0, "obj": 0.5, "atr": 0.25})
    assert s.length is None
    assert s.next() == [("ans", 1.0), ("obj", 0.5), ("atr", 0.25)]
    assert s.state_dict() == {"position": 1}


def test_step_decay_halves_every_step_and_restarts_per_segment():
    lr = StepDecay([(0, 3)], gamma=0.5)
    assert [lr.factor(i) for i in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    staged = StepDecay([(0, 2), (4, 3)], gamma=0.5)
    assert [staged.factor(i) for i in range(8)] == [1, 1, 0.5, 0.5, 1, 1, 1, 0.5]
    with pytest.raises(ValueError):
        StepDecay([(1, 2)])
