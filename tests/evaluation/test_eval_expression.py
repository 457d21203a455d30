"""Expression classifier and blendshape AU proxies on real happy vs neutral photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facecycle.errors import FacecycleError
from facecycle.evaluation import expression as ex
from facecycle.evaluation.inputs import to_batch

N = 16


@pytest.fixture(scope="module")
def happy_neutral(shared_faces: Path) -> tuple[torch.Tensor, torch.Tensor]:
    pick = lambda name: to_batch(sorted((shared_faces / name).glob("*.jpg"))[:N], channels=1)  # noqa: E731
    return pick("happiness"), pick("neutral")


def test_classifier_says_happy_on_happy_photos(happy_neutral: tuple[torch.Tensor, torch.Tensor]) -> None:
    happy, neutral = happy_neutral
    p_happy, found = ex.expression_probabilities(happy)
    p_neutral, _ = ex.expression_probabilities(neutral)
    assert p_happy.shape == (N, 7) and np.allclose(p_happy.sum(1), 1, atol=1e-4)
    assert found.mean() > 0.7  # the Haar cascade finds most of these faces
    rate_happy = ex.target_expression_rate(p_happy, "happiness")
    rate_neutral = ex.target_expression_rate(p_neutral, "happy")
    assert rate_happy >= 0.6 and rate_happy > rate_neutral + 0.4


def test_expression_names() -> None:
    assert ex.EXPRESSIONS[ex.expression_index("happiness")] == "happy"
    assert ex.expression_index("Anger") == ex.EXPRESSIONS.index("angry")
    with pytest.raises(FacecycleError, match="choose one of"):
        ex.expression_index("smug")


def test_smile_units_rise_from_neutral_to_happy(happy_neutral: tuple[torch.Tensor, torch.Tensor]) -> None:
    happy, neutral = happy_neutral
    before, after = ex.blendshape_aus(neutral[:8]), ex.blendshape_aus(happy[:8])
    assert before.shape == (8, len(ex.AU_NAMES))
    change = ex.au_change(before, after, "happy")
    assert change["au_pairs"] >= 6
    assert set(change) == {"au_pairs", "au_change_AU06", "au_change_AU12", "au_change_relevant"}
    assert change["au_change_AU12"] > 0.2  # lip corner puller: the smile itself
    blank = ex.blendshape_aus(torch.zeros(1, 3, 64, 64))
    assert np.isnan(blank).all()
