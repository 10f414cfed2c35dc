"""The permission broker of a Claude session (executor/claude/permissions.py) under any order
of requests, answers, withdrawals and the run's end: each request is decided exactly once,
the CLI gets exactly one answer for each request not withdrawn (and none for a withdrawn
one), and every later answer is told who decided first."""

from __future__ import annotations

import time

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.executor.claude.permissions import PermissionBroker, PermissionSettings
from cc_executor.executor.config.claude import PermissionRule
from cc_executor.protocol import InvalidParams
from cc_executor.protocol.claude import (
    ClaudePermissionDeadline,
    ClaudePermissionDecided,
    ClaudePermissionRequest,
    SessionNotice,
)
from cc_executor.protocol.errors import AlreadyDecided

RULE = PermissionRule(name="no-rm", tool="Bash", input_pattern=r"^rm ", behavior="deny")

Step = tuple[str, int]


def broker(posted: list[SessionNotice], answered: list[str]) -> PermissionBroker:
    return PermissionBroker(
        "r",
        PermissionSettings(timeout=300.0, default="deny", rules=(RULE,)),
        posted.append,
        lambda request, response: answered.append(request),
        lambda: None,
    )


def request_body(n: int) -> dict[str, object]:
    command = f"rm {n}" if n % 4 == 3 else f"touch {n}"  # every fourth one a rule decides
    return {"tool_name": "Bash", "input": {"command": command}, "tool_use_id": f"t{n}"}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["request", "allow", "deny", "withdraw"]), st.integers(0, 5)),
        max_size=40,
    ),
    st.booleans(),
)
def test_each_request_is_decided_once(steps: list[Step], close_at_end: bool) -> None:
    posted: list[SessionNotice] = []
    answered: list[str] = []
    late: list[AlreadyDecided] = []

    async def main() -> None:
        subject = broker(posted, answered)
        for action, n in steps:
            request_id = f"q{n}"
            if action == "request":
                subject.request(request_id, request_body(n))
            elif action == "withdraw":
                subject.withdraw(request_id, "withdrawn")
            else:
                try:
                    await subject.answer(request_id, action, f"client:c{n}")  # type: ignore[arg-type]
                except AlreadyDecided as exc:
                    late.append(exc)
                except InvalidParams:
                    pass  # never requested
        if close_at_end:
            subject.close()
            assert not subject.pending

    trio.run(main)
    requested = [n.request for n in posted if isinstance(n, ClaudePermissionRequest)]
    decided = [n for n in posted if isinstance(n, ClaudePermissionDecided)]
    assert len(requested) == len(set(requested))  # asked once per request id
    assert len(decided) == len({d.request for d in decided})  # decided at most once
    assert {d.request for d in decided} <= set(requested)
    withdrawn = {d.request for d in decided if d.by == "cancelled"}
    assert sorted(answered) == sorted(d.request for d in decided if d.by != "cancelled")
    assert not withdrawn & set(answered)
    for d in decided:  # the decision follows its request in the stream
        asked = next(i for i, n in enumerate(posted) if isinstance(n, ClaudePermissionRequest)
                     and n.request == d.request)  # fmt: skip
        assert asked < posted.index(d)
        if d.request == "q3":  # "rm 3": the rule decides it, before anyone can answer
            assert (d.by, d.behavior) == ("rule:no-rm", "deny")
    for exc in late:
        assert isinstance(exc.data, dict)
        assert exc.data["decided_by"] in {d.by for d in decided}
    if close_at_end:
        assert {d.request for d in decided} == set(requested)


def timed_broker() -> tuple[PermissionBroker, list[SessionNotice], list[str]]:
    """A broker with a 5 s timeout that denies: it, what it posts, the requests it answered."""
    posted: list[SessionNotice] = []
    answered: list[str] = []
    subject = PermissionBroker(
        "r",
        PermissionSettings(timeout=5.0, default="deny"),
        posted.append,
        lambda request, response: answered.append(request),
        lambda: None,
    )
    return subject, posted, answered


async def test_the_timer_decides_with_the_default(autojump_clock: trio.abc.Clock) -> None:
    subject, posted, answered = timed_broker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subject.serve)
        subject.request("early", request_body(0))
        await trio.sleep(3)
        subject.request("later", request_body(1))
        await trio.sleep(2.5)  # "early" is due, "later" is not
        assert answered == ["early"]
        await subject.answer("later", "allow", "client:c")
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    decided = [
        (n.request, n.by, n.message) for n in posted if isinstance(n, ClaudePermissionDecided)
    ]
    assert decided == [
        ("early", "timeout", "no answer within 5 s"),
        ("later", "client:c", None),
    ]
    with pytest.raises(AlreadyDecided, match="decided already by timeout"):
        await subject.answer("early", "allow", "client:c")


async def test_the_timer_stops_while_the_run_is_paused(autojump_clock: trio.abc.Clock) -> None:
    """Timing logic only (the SIGSTOP PAUSE itself reaches the broker as a PAUSED state event)."""
    subject, _posted, answered = timed_broker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subject.serve)
        subject.request("before", request_body(0))
        await trio.sleep(3)  # 2 s left
        subject.set_paused(True)
        subject.request("during", request_body(1))  # already in the pipe when stopped
        await trio.sleep(100)  # paused: nothing times out
        assert answered == []
        subject.set_paused(False)
        await trio.sleep(1.5)
        assert answered == []
        await trio.sleep(1)  # "before" had 2 s left
        assert answered == ["before"]
        await trio.sleep(3)  # "during" gets its whole 5 s from the RESUME
        assert answered == ["before", "during"]
        nursery.cancel_scope.cancel()


async def test_a_resume_posts_each_moved_deadline(autojump_clock: trio.abc.Clock) -> None:
    """On RESUME every pending request's new `expires_at` is posted and listed (status)."""
    subject, posted, _answered = timed_broker()
    subject.request("before", request_body(0))
    await trio.sleep(3)  # 2 s left
    subject.set_paused(True)
    subject.request("during", request_body(1))
    await trio.sleep(100)
    assert not [n for n in posted if isinstance(n, ClaudePermissionDeadline)]
    wall = time.time()  # the autojump clock moves trio's time only: stamps are from now
    subject.set_paused(False)
    moved = [n for n in posted if isinstance(n, ClaudePermissionDeadline)]
    assert [n.request for n in moved] == ["before", "during"]
    new = {n.request: n.expires_at for n in moved}
    # The time each had left: "before" 2 s (3 of 5 used before the pause), "during" all 5.
    assert new["before"] == pytest.approx(wall + 2, abs=0.5)
    assert new["during"] == pytest.approx(wall + 5, abs=0.5)
    assert {p["request"]: p["expires_at"] for p in subject.snapshot()} == new
    subject.set_paused(False)  # a second RESUME moves nothing
    assert len([n for n in posted if isinstance(n, ClaudePermissionDeadline)]) == 2
