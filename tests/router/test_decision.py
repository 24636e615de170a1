from __future__ import annotations

import numpy as np

from aragog.router import decision

CONFIGS = [("s", "s"), ("s", "l"), ("l", "s"), ("l", "l")]
COST = {"s": 1.0, "l": 10.0}


def test_dominance_and_closure() -> None:
    dom = decision.dominance(CONFIGS, COST)
    assert dom[0].all()  # everything dominates (s, s)
    assert dom[1].tolist() == [False, True, False, True]
    closed = decision.closure(np.array([[False, True, False, False]]), dom)
    assert closed.tolist() == [[False, True, False, True]]


def test_decide_always_keeps_cmax() -> None:
    dom = decision.dominance(CONFIGS, COST)
    mask = decision.decide(np.zeros((1, 4), np.float32), 0.5, dom, largest=3)
    assert mask.tolist() == [[False, False, False, True]]


def test_class_scores() -> None:
    correct = np.array([[True, False, True, False], [False, False, False, True]])
    s = decision.class_scores(correct, largest=3)
    # c_max wrong: all viable; correct ones also gain
    assert s[0].tolist() == [2.0, 1.0, 2.0, 1.0]
    assert s[1].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_threshold_meets_target_and_is_as_low_as_allowed() -> None:
    dom = decision.dominance(CONFIGS, COST)
    cost = np.array([2.0, 11.0, 11.0, 20.0])
    # (s, s) is right exactly when the router is confident; c_max always right
    conf = np.array([0.9] * 50 + [0.2] * 50, np.float32)
    prob = np.stack([conf, conf, conf, np.ones(100, np.float32)], axis=1)
    correct = np.ones((100, 4), bool)
    correct[50:, :3] = False
    t = decision.calibrate_threshold(prob, correct, dom, 3, cost, max_loss=0.0)
    assert 0.2 < t <= 0.9
    chosen = decision.cheapest(decision.decide(prob, t, dom, 3), cost)
    assert decision.accuracy_loss(chosen, correct, 3) == 0.0
    assert (chosen[:50] == 0).all()


def test_static_set_is_upward_safe() -> None:
    dom = decision.dominance(CONFIGS, COST)
    # (s, l) meets the target but its dominator (l, l)... is c_max, fine; (s, s) meets it
    # but (l, s) above it does not, so (s, s) must go.
    correct = np.zeros((10, 4), bool)
    correct[:, [0, 1, 3]] = True
    s = decision.static_viable_set(correct, 3, dom, max_loss=0.0)
    assert s.tolist() == [False, True, False, True]


def test_closure_skips_configurations_below_the_target() -> None:
    """(s, l) predicted; closure would add (l, l) = c_max anyway, and nothing else above it.
    From (s, s) it would add (l, s) too, unless the data shows (l, s) below the target."""
    dom = decision.dominance(CONFIGS, COST)
    prob = np.array([[0.9, 0.0, 0.0, 0.0]], np.float32)
    assert decision.decide(prob, 0.5, dom, 3).tolist() == [[True, True, True, True]]
    closable = np.array([True, True, False, True])
    got = decision.decide(prob, 0.5, dom, 3, closable=closable)
    assert got.tolist() == [[True, True, False, True]]
    # A configuration the model itself predicts stays in, closable or not.
    prob[0, 2] = 0.9
    assert decision.decide(prob, 0.5, dom, 3, closable=closable)[0, 2]


def test_accurate_set() -> None:
    correct = np.zeros((10, 4), bool)
    correct[:, [0, 1]] = True
    correct[:9, 3] = True
    assert decision.accurate_set(correct, 3, max_loss=0.0).tolist() == [True, True, False, True]
