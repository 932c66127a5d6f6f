"""Label selector parsing and matching."""

import pytest

from kappa.errors import SelectorError
from kappa.repository.selectors import parse_selector

LABELS = {"framework": "sklearn", "stage": "prod"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("framework=sklearn", True),
        ("framework==sklearn", True),
        ("framework=xgboost", False),
        ("framework!=xgboost", True),
        ("team!=fraud", False),  # != requires the label (as NotIn does)
        ("stage In (prod, qa)", True),
        ("stage in (qa)", False),
        ("stage NotIn (qa)", True),
        ("team NotIn (fraud)", False),  # "key equals platform and value not in ...": needs the key
        ("team DoesNotExist, framework NotIn (xgboost)", True),
        ("framework Exists", True),
        ("team Exists", False),
        ("team DoesNotExist", True),
        ("framework DoesNotExist", False),
        ("framework=sklearn, stage In (prod), team DoesNotExist", True),
        ("framework=sklearn,stage=qa", False),
    ],
)
def test_matching(selector, matches):
    assert parse_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("selector", "points_at", "why"),
    [
        ("framework=sklearn, team In (a b)", "team In (a b)", "bad value"),
        ("team In (a, b", "team In (a, b", "unbalanced parentheses"),
        ("a=b,,c=d", "", "empty requirement"),
        ("x ~ y", "x ~ y", "cannot parse"),
        ("-bad=1", "-bad=1", "cannot parse"),
    ],
)
def test_malformed_selectors_point_at_the_bad_part(selector, points_at, why):
    with pytest.raises(SelectorError) as info:
        parse_selector(selector)
    message = str(info.value)
    assert why in message and f"'{points_at}'" in message
    lines = message.splitlines()
    caret_line = lines[2]
    start = caret_line.index("^")
    if points_at:
        assert lines[1][start:].startswith(points_at)


def test_empty_selector():
    with pytest.raises(SelectorError, match="empty label selector"):
        parse_selector("  ")
