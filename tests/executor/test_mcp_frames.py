"""Answers that must fit one frame: the most items that fit (list, claude_session, tasks/list)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cc_executor.executor.mcp.session import most_that_fit


@given(st.lists(st.integers(1, 500), min_size=1, max_size=60), st.integers(0, 5000))
def test_the_most_items_that_fit_and_always_one(sizes: list[int], room: int) -> None:
    def fits(count: int) -> bool:
        return sum(sizes[:count]) <= room

    kept = most_that_fit(len(sizes), fits)
    assert 1 <= kept <= len(sizes)
    assert kept == 1 or fits(kept)
    assert kept == len(sizes) or not fits(kept + 1)
