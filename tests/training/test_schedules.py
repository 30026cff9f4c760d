"""Exact sequences of the task schedules and the learning-rate decay."""

from __future__ import annotations

import pytest

from vlmt.training.schedules import (
    CurriculumSchedule,
    PeriodicSchedule,
    StepDecay,
    WeightedJointSchedule,
    growing_stages,
    periodic_block,
    stage_shares,
    subset_stages,
    update_counts,
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


def test_growing_curriculum_with_the_full_budget():
    stages = growing_stages(["a", "b", "c"])
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


def test_subset_curriculum_trains_every_task_alone_and_in_every_pair():
    assert subset_stages(["a", "b", "c"]) == [["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"],
                                              ["a", "b", "c"]]
    assert subset_stages(["a"]) == [["a"]]


def test_shared_budget_gives_each_task_its_iterations_in_all():
    stages = subset_stages(["a", "b", "c"])
    # every task is in 4 of the 7 stages: a quarter of its #iter in each
    assert stage_shares(stages, "shared")[0] == {"a": 0.25}
    assert stage_shares(stages, "full")[6] == {"a": 1.0, "b": 1.0, "c": 1.0}
    iterations = {"a": 120, "b": 120, "c": 120}
    shared = CurriculumSchedule(stages, iterations, cycle=6, budget="shared")
    assert update_counts(shared, shared.length) == iterations
    full = CurriculumSchedule(stages, iterations, cycle=6, budget="full")
    # Sec. 4.2 to the letter: every stage re-runs its tasks' whole #iter (each is in 4 stages)
    assert update_counts(full, full.length) == {"a": 480, "b": 480, "c": 480}
    # uneven counts: Algorithm 1 rounds C * alpha_i, so totals are near, not equal
    uneven = CurriculumSchedule(stages, {"a": 400, "b": 200, "c": 80}, cycle=10, budget="shared")
    assert update_counts(uneven, uneven.length) == {"a": 403, "b": 195, "c": 82}
    with pytest.raises(ValueError, match="budget"):
        CurriculumSchedule(stages, iterations, cycle=10, budget="half")


def test_update_counts_leaves_the_schedule_where_it_was():
    s = PeriodicSchedule(["a", "b"], [3, 1], cycle=4)
    names(s, 2)
    assert update_counts(s, 8) == {"a": 6, "b": 2}
    assert s.state_dict() == {"position": 2}


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


def test_continuous_decay_is_the_staircase_without_the_floor():
    lr = StepDecay([(0, 4)], gamma=0.5, style="continuous")
    assert [lr.factor(i) for i in (0, 2, 4, 6, 8)] == [1, 2**-0.5, 0.5, 2**-1.5, 0.25]
    stair = StepDecay([(0, 4)], gamma=0.5)
    # equal at the period boundaries, strictly below the staircase inside a period
    assert all(lr.factor(i) == stair.factor(i) for i in (0, 4, 8, 12))
    assert all(lr.factor(i) < stair.factor(i) for i in range(13) if i % 4)
    staged = StepDecay([(0, 2), (4, 3)], gamma=0.5, style="continuous")
    assert [staged.factor(i) for i in (3, 4, 7)] == [0.5**1.5, 1, 0.5]  # restarts per segment
    with pytest.raises(ValueError, match="style"):
        StepDecay([(0, 2)], style="linear")


def test_step_decay_state_carries_the_style():
    stair, cont = StepDecay([(0, 4)]), StepDecay([(0, 4)], style="continuous")
    assert cont.state_dict() == {"segments": [[0, 4]], "gamma": 0.5, "style": "continuous"}
    cont.load_state_dict(StepDecay([(0, 4)], style="continuous").state_dict())
    with pytest.raises(ValueError, match="differs"):
        cont.load_state_dict(stair.state_dict())
    with pytest.raises(ValueError, match="differs"):
        stair.load_state_dict(cont.state_dict())
    # a checkpoint written before the option existed held a staircase
    stair.load_state_dict({"segments": [[0, 4]], "gamma": 0.5})
    with pytest.raises(ValueError, match="differs"):
        cont.load_state_dict({"segments": [[0, 4]], "gamma": 0.5})
