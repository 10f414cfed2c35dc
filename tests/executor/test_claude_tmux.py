"""`ccx claude` in a real terminal (tmux), against the real CLI and the fake Messages API: type
a message, approve a tool, Ctrl-C a streaming turn, Ctrl-D; and a second terminal attached to
a durable session."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from ccx_testing import run_daemon, start_daemon, wait_until
from claude_fake_api import PLAIN_TEXT
from claude_world import ClaudeWorld, assert_nothing_left, daemon_env
from faults_net_testing import ResettingProxy
from tmux_testing import CCX, TMUX, Pane, exit_status, open_pane

from cc_executor.executor.client import RunStatus, open_connection
from cc_executor.supervision.testing import marked_processes

pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (apt-get install -y tmux)"
)
# A CLI turn against the fake API takes about a second; a screen is given this long.
SCREEN_BOUND = 60
SESSION = re.compile(r"^ccx: Claude session ([\w-]+)", re.MULTILINE)


def lines(screen: str) -> list[str]:
    return [line.rstrip() for line in screen.splitlines()]


def prompt_shown(screen: str) -> bool:
    """The last line is ccx's prompt (tmux drops its trailing space)."""
    return lines(screen.rstrip())[-1:] == [">"]


async def wait(pane: Pane, found: Callable[[str], bool]) -> str:
    return await pane.wait_for(found, SCREEN_BOUND)


async def start_session(pane: Pane, url: str, world: ClaudeWorld, *options: str) -> str:
    """Type `ccx claude` (its exit status echoed after it) and wait for its prompt; the run."""
    # After the shell's prompt: typed before it, the line's echo comes first and the prompt
    # lands in front of ccx's first line.
    await wait(pane, lambda s: s.rstrip().endswith("$"))
    pane.type(
        " ".join([f"{CCX} claude --url {url} --cwd {world.work}", *options]) + "; echo EXIT=$?"
    )
    screen = await wait(pane, prompt_shown)
    found = SESSION.search(screen)
    assert found is not None, screen
    return found.group(1)


async def test_type_approve_interrupt_and_close(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    made = world.work / "made.txt"
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)

        pane.type("hello")
        screen = await wait(pane, lambda s: "ccx: turn 1 done" in s and prompt_shown(s))
        assert PLAIN_TEXT in lines(screen), screen  # the answer, on a line of its own

        pane.type(f"please [tool:touch {made}]")
        screen = await wait(pane, lambda s: "allow? [y/n]" in s)
        assert f"ccx: Claude wants to use Bash: touch {made}" in screen
        pane.type("y")
        await wait(pane, lambda s: "ccx: turn 2 done" in s and prompt_shown(s))
        assert made.exists()

        pane.type("[slow:300]")
        await wait(pane, lambda s: "chunk 3" in s)  # streaming, as it is written
        pane.keys("C-c")
        screen = await wait(pane, lambda s: "ccx: turn 3 interrupted" in s and prompt_shown(s))
        assert "ccx: interrupting turn 3" in screen

        pane.type("still there?")  # the same process takes the next turn
        await wait(pane, lambda s: "ccx: turn 4 done" in s and prompt_shown(s))

        pane.keys("C-c")  # at the prompt: a new prompt, the session untouched
        await wait(pane, lambda s: [x[:1] for x in lines(s.rstrip())[-2:]] == [">", ">"])

        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert re.search(rf"^ccx: session {run} closed \(4 turn\(s\), \$[0-9.]+\)$", screen, re.M)
    assert_nothing_left(run)


async def test_a_second_terminal_attaches_is_asked_what_is_pending_and_answers(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    denied, made = world.work / "denied.txt", world.work / "from-b.txt"
    async with open_pane(tmp_path) as a, open_pane(tmp_path) as b:
        run = await start_session(a, served.url, world, "--durable")
        a.type("hello")
        await wait(a, lambda s: "ccx: turn 1 done" in s and prompt_shown(s))
        a.type(f"[tool:touch {denied}]")
        await wait(a, lambda s: "allow? [y/n]" in s)

        # B joins while the request is pending: the past is shown again, then it is asked.
        b.type(f"{CCX} claude attach --url {served.url} {run}; echo EXIT=$?")
        screen = await wait(b, lambda s: "allow? [y/n]" in s)
        assert "» hello" in lines(screen), screen  # someone else's messages, replayed
        assert PLAIN_TEXT in lines(screen), screen
        assert f"ccx: Claude wants to use Bash: touch {denied}" in screen
        b.type("n not from here")
        screen = await wait(a, lambda s: "was denied by client:" in s)
        await wait(a, lambda s: "ccx: turn 2 done" in s and prompt_shown(s))
        await wait(b, lambda s: "ccx: turn 2 done" in s and prompt_shown(s))
        assert not denied.exists()  # the deny reached the CLI: the tool did not run

        b.type(f"from b [tool:touch {made}]")  # B types; both are asked
        await wait(b, lambda s: s.count("allow? [y/n]") == 2)
        screen = await wait(a, lambda s: s.count("allow? [y/n]") == 2)
        assert f"» from b [tool:touch {made}]" in lines(screen), screen
        a.type("y")
        await wait(b, lambda s: "was allowed by client:" in s)
        await wait(b, lambda s: "ccx: turn 3 done" in s and prompt_shown(s))
        await wait(a, lambda s: "ccx: turn 3 done" in s and prompt_shown(s))
        assert made.exists()

        b.keys("C-d")  # B leaves; the session goes on for A
        screen = await wait(b, lambda s: exit_status(s) is not None)
        assert exit_status(screen) == 0
        assert f"ccx: left session {run}; it goes on" in screen
        async with open_connection(served.url) as conn:
            assert (await conn.run_status(run)).state == "running"

        a.keys("C-d")
        screen = await wait(a, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert f"ccx: session {run} closed (3 turn(s)" in screen
    assert_nothing_left(run)


async def test_a_line_typed_while_a_turn_runs_is_queued_then_answered(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)
        pane.type("[slow:30]")
        await wait(pane, lambda s: "chunk 1" in s)
        pane.type("meanwhile")  # the turn still streams
        await wait(pane, lambda s: "ccx: queued behind turn 1 (message m-2)" in s)
        # Taken by the running turn, or the next turn's: either way it is answered.
        screen = await wait(pane, lambda s: PLAIN_TEXT in lines(s) and prompt_shown(s))
        assert "chunk 29" in screen
        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert_nothing_left(run)


async def test_a_session_ended_elsewhere_says_how_and_exits_1(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)
        async with open_connection(served.url) as conn:
            await conn.call("control", {"run": run, "type": "CANCEL"})
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 1, screen
    assert re.search(rf"^ccx: session {run} ended: .+ \(0 turn\(s\), \$0\.0000\)$", screen, re.M)
    assert_nothing_left(run)


async def test_model_pause_and_a_withdrawn_request_are_said_in_words(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    # The CLI's echo of a set_model ("<local-command-stdout>Set model to ...") was shown as a
    # message someone else sent ("» <local-command-stdout>..."), a pause by another client
    # said nothing (a line typed then seemed lost), and a withdrawn request "was denied by
    # cancelled".
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane, open_connection(served.url) as conn:
        run = await start_session(pane, served.url, world)

        pane.type("/model opus")
        await wait(pane, lambda s: "ccx: model opus from the next request on" in s)
        await conn.call("claude.set_model", {"run": run, "model": "sonnet"})  # someone else's
        screen = await wait(pane, lambda s: "ccx: Set model to sonnet" in s)
        assert "Set model to opus" not in screen, screen  # ours is said once, by us
        assert "local-command" not in screen, screen
        assert "»" not in screen, screen

        await conn.call("control", {"run": run, "type": "PAUSE"})
        await wait(
            pane,
            lambda s: (
                f"ccx: the session is paused (ccx --url {served.url} resume {run} resumes it)" in s
            ),
        )
        pane.type("hello")
        await conn.call("control", {"run": run, "type": "RESUME"})
        screen = await wait(pane, lambda s: "ccx: turn 1 done" in s and prompt_shown(s))
        assert "ccx: the session is resumed" in lines(screen), screen

        pane.type(f"[tool:touch {world.work / 'never.txt'}]")
        screen = await wait(pane, lambda s: "allow? [y/n]" in s)
        await conn.call("claude.interrupt", {"run": run})
        screen = await wait(pane, lambda s: "ccx: turn 2 interrupted" in s and prompt_shown(s))
        assert re.search(
            r"^ccx: request \S+ was withdrawn \(the turn or the session ended first\)$",
            screen,
            re.M,
        ), screen
        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert_nothing_left(run)


async def test_a_durable_session_whose_daemon_dies_says_where_to_look(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # "lost the session: the connection ... was lost" said nothing of the durable session.
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
    ):
        run = await start_session(pane, daemon.url, world, "--durable")
        daemon.process.kill()  # SIGKILL: ccx's reconnects find nothing
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 1, screen
    joined = " ".join(lines(screen))  # the line may wrap
    assert "ccx: lost the session: " in joined, screen
    assert f"ccx --url {daemon.url} claude attach {run} says what became of it" in joined, screen


async def test_ctrl_c_while_the_session_closes_ends_it_now(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    # After Ctrl-D (stdin EOF) an interrupt can no longer reach the CLI: Ctrl-C said
    # "interrupting turn 1", the daemon refused it (closing) and the turn streamed on until
    # the close grace ran out.
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)
        pane.type("[slow:300]")
        await wait(pane, lambda s: "chunk 2" in s)
        pane.keys("C-d")
        await wait(pane, lambda s: f"ccx: closing session {run}" in s)
        pane.keys("C-c")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert f"ccx: ending session {run} now" in screen, screen
    assert "chunk 299" not in screen, screen
    assert exit_status(screen) == 0, screen
    assert_nothing_left(run)


async def test_a_connection_lost_under_a_typed_line_is_said_once(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # The line's claude.send raised ConnectionLost out of the reader: after "lost the session"
    # came a second line, "ccx: lost the connection to URL: the connection to URL was lost".
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
    ):
        pane.type(f"{CCX} claude --url {daemon.url} --cwd {world.work}; echo EXIT=$?")
        screen = await wait(pane, prompt_shown)
        os.kill(daemon.process.pid, signal.SIGSTOP)  # the line's request waits for a reply
        pane.type("hello")
        await wait(pane, lambda s: "hello" in s)
        os.kill(daemon.process.pid, signal.SIGKILL)  # and the connection goes under it
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 1, screen
    said = [line for line in lines(screen) if line.startswith("ccx: ")]
    # The reader and the shower each say their part, in either order; nothing else follows.
    assert {line.split(":")[1] for line in said[-2:]} == {" lost the session", " not sent"}, screen
    assert not any(line.startswith("ccx: lost the connection") for line in said), screen


# -- the daemon under real faults: stopped, restarted, reset -----------------------------------

HINT = re.compile(r"; (ccx .* claude --resume [\w-]+(?: --cwd \S+)?) continues its conversation$")


def joined_lines(screen: str) -> str:
    return "\n".join(lines(screen))


def resume_hint(screen: str) -> str:
    """The `ccx claude --resume ...` command an ending line offers (the line may wrap)."""
    for line in lines(screen):
        if (found := HINT.search(line)) is not None:
            return found.group(1)
    raise AssertionError(f"no resume hint on the screen:\n{screen}")


async def completed_status(url: str, run: str) -> RunStatus:
    """The run's status once it is over (polled: the test holds no stream of it)."""
    with trio.fail_after(SCREEN_BOUND):
        async with open_connection(url) as conn:
            for _ in range(SCREEN_BOUND * 10):
                status = await conn.run_status(run)
                if status.state == "completed":
                    return status
                await trio.sleep(0.1)
    raise AssertionError(f"run {run} did not end: {status}")


async def resume_and_ask(pane: Pane, world: ClaudeWorld, hint: str, earlier: str) -> None:
    """Type the hint as printed: a new session continues the conversation that has `earlier`
    in it (the fake API is sent it again), and closes with Ctrl-D, exit 0."""
    pane.type("clear")
    await wait(pane, lambda s: not s.strip() or s.strip() == "$")
    pane.type(f"{hint}; echo EXIT=$?")
    await wait(pane, prompt_shown)
    before = len(world.api.requests)
    pane.type("and then?")
    await wait(pane, lambda s: "ccx: turn 1 done" in s)
    pane.keys("C-d")
    screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    sent = [str(r["body"]["messages"]) for r in world.api.requests[before:]]
    assert any(earlier in m and "and then?" in m for m in sent), sent


async def test_a_stopped_daemon_is_said_and_the_session_goes_on_after_sigcont(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # SIGSTOP of the daemon left ccx silent: a line typed got no answer and nothing said why.
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
    ):
        run = await start_session(pane, daemon.url, world)
        os.kill(daemon.process.pid, signal.SIGSTOP)
        try:
            await wait(pane, lambda s: "is not answering" in s)
            pane.type("hello")  # waits for the daemon, not lost
            await wait(pane, lambda s: "hello" in s)
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)
        await wait(pane, lambda s: "ccx: turn 1 done" in s)
        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    said = joined_lines(screen)
    assert (
        f"ccx: the daemon at {daemon.url} is not answering (nothing for 5 s); waiting for it — "
        "Ctrl-C leaves, and the daemon ends the session when it sees ccx gone (it is not durable)"
    ) in said, screen
    assert f"ccx: the daemon at {daemon.url} answers again" in said, screen
    assert said.count(PLAIN_TEXT) == 1, screen
    assert f"ccx: session {run} closed (1 turn(s)" in said, screen
    assert_nothing_left(run)


async def test_ctrl_c_leaves_a_daemon_that_does_not_answer(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # Ctrl-C sent claude.interrupt and waited for the stopped daemon's reply: no way out.
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
    ):
        run = await start_session(pane, daemon.url, world)
        pane.type("[slow:300]")  # a turn runs: Ctrl-C would interrupt it
        await wait(pane, lambda s: "chunk 2" in s)
        os.kill(daemon.process.pid, signal.SIGSTOP)
        try:
            await wait(pane, lambda s: "is not answering" in s)
            pane.keys("C-c")
            screen = await wait(pane, lambda s: exit_status(s) is not None)
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)
        status = await completed_status(daemon.url, run)  # the daemon ends it, ccx gone
    assert exit_status(screen) == 130, screen
    assert (
        f"ccx: left session {run} without the daemon's answer; the daemon ends it when it "
        "sees ccx gone (it is not durable)"
    ) in joined_lines(screen), screen
    assert status.outcome == "cancelled", status
    assert_nothing_left(run)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
async def test_a_daemon_stopped_and_started_again_says_how_the_session_ended_and_resumes(
    world: ClaudeWorld, tmp_path: Path, stop: str
) -> None:
    # The restart ended the session with no word of its conversation, which the CLI keeps and
    # `--resume` continues; a SIGTERM with no grace said "run ID then it is cancelled".
    state = str(tmp_path / "state")
    async with open_pane(tmp_path) as pane:
        async with run_daemon("--state-dir", state, env=daemon_env(world)) as daemon:
            port = daemon.port
            run = await start_session(pane, daemon.url, world, "--durable")
            pane.type("hello")
            await wait(pane, lambda s: "ccx: turn 1 done" in s)
            daemon.process.send_signal(getattr(signal, stop))
            await daemon.process.wait()
        async with run_daemon("--state-dir", state, "--port", str(port), env=daemon_env(world)):
            screen = await wait(pane, lambda s: exit_status(s) is not None)
            said = joined_lines(screen)
            assert exit_status(screen) == 1, screen
            why = (
                "daemon shutdown"
                if stop == "SIGTERM"
                else "daemon restarted while the run was live"
            )
            assert f"ccx: session {run} ended: {why} (1 turn(s), $" in said, screen
            if stop == "SIGTERM":
                assert f"ccx: the daemon is shutting down: run {run} is cancelled now" in said
            hint = resume_hint(screen)
            assert hint.startswith(f"ccx --url {daemon.url} claude --resume "), hint
            assert hint.endswith(f" --cwd {world.work}"), hint
            await resume_and_ask(pane, world, hint, "hello")
    assert_nothing_left(run)


async def test_a_reset_connection_says_the_session_ended_and_how_to_resume(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # "lost the session: the connection ... was lost" said nothing of what became of it.
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
        trio.open_nursery() as nursery,
    ):
        proxy = ResettingProxy(daemon.port)
        await nursery.start(proxy.serve)
        run = await start_session(pane, proxy.url, world)
        pane.type("hello")
        await wait(pane, lambda s: "ccx: turn 1 done" in s)
        proxy.reset()  # a real RST to ccx and to the daemon
        screen = await wait(pane, lambda s: exit_status(s) is not None)
        said = joined_lines(screen)
        assert exit_status(screen) == 1, screen
        assert (
            f"ccx: lost the session: the connection to {proxy.url} was lost; a session that is "
            "not durable ends with its connection; "
        ) in said, screen
        status = await completed_status(daemon.url, run)
        assert status.outcome == "cancelled", status
        await resume_and_ask(pane, world, resume_hint(screen), "hello")
        nursery.cancel_scope.cancel()
    assert_nothing_left(run)


async def test_a_durable_session_goes_on_across_a_reset_connection(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
        trio.open_nursery() as nursery,
    ):
        proxy = ResettingProxy(daemon.port)
        await nursery.start(proxy.serve)
        run = await start_session(pane, proxy.url, world, "--durable")
        pane.type("hello")
        await wait(pane, lambda s: "ccx: turn 1 done" in s)
        proxy.reset()  # ccx reconnects through the proxy and attaches again
        pane.type("again")
        await wait(pane, lambda s: "ccx: turn 2 done" in s)
        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
        nursery.cancel_scope.cancel()
    assert exit_status(screen) == 0, screen
    assert joined_lines(screen).count(PLAIN_TEXT) == 2, screen
    assert f"ccx: session {run} closed (2 turn(s)" in screen, screen
    assert_nothing_left(run)


async def test_ctrl_c_leaves_while_ccx_reconnects_to_a_killed_daemon(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # Reconnecting under a durable session (about 12 s) was silent, and Ctrl-C at the prompt
    # only drew a new one.
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
    ):
        run = await start_session(pane, daemon.url, world, "--durable")
        daemon.process.kill()
        await wait(pane, lambda s: "not back after 5 s; reconnecting" in s)
        pane.keys("C-c")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    said = joined_lines(screen)
    assert exit_status(screen) == 130, screen
    attach = f"ccx --url {daemon.url} claude attach {run}"
    assert (
        f"ccx: lost the connection to {daemon.url}, not back after 5 s; reconnecting — Ctrl-C "
        f"leaves ({attach} says what became of the session)"
    ) in said, screen
    assert f"ccx: left session {run}; {attach} says what became of it" in said, screen
    # Its CLI, the killed daemon's child, ends by itself at the EOF of its stdin.
    await wait_until(lambda: not marked_processes(run), bound=SCREEN_BOUND)
