"""A `claude` request's plan: the vetted CLI run, its Claude session claim and its watcher.

Theory of operation: a `claude` request becomes an argv (protocol.claude.build_argv, with the
configured binary and the flag rules of policy.py), an environment built by policy
(``claude_environment``), the command rules, cwd roots, rlimits and output limit of any run,
and supervision settings with the interrupt rung: every way of ending the run — CANCEL, the
absolute timeout, the watchdog, a disconnect, shutdown — starts with SIGINT to the CLI's
group (it then writes a proper ``result`` and kills the tools it started in their own
sessions), then SIGTERM, SIGKILL and the sweep of escaped descendants.  The plan's exclusive
key is the Claude session the run will write to, when that is known before it starts, and its
observer is a ``ClaudeWatch`` (watch.py) — for a session run (``session: true``) a
``ClaudeSession`` around it (session.py), which owns the CLI's stdin pipe.  The plan goes
through the one start path like any other, so a Claude run started over MCP, or durable, is
watched and claimed the same way.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from cc_executor.executor.claude.permissions import PermissionSettings
from cc_executor.executor.claude.policy import vet_claude
from cc_executor.executor.claude.session import ClaudeSession, SessionSettings
from cc_executor.executor.claude.watch import ClaudeWatch, WatchSettings
from cc_executor.executor.runs.plan import ObserverFactory, Post, RunPlan
from cc_executor.protocol import InvalidParams
from cc_executor.protocol.claude import ClaudeEvent, ClaudeParams
from cc_executor.supervision import Run

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.runs.claims import Claims


def session_key(params: ClaudeParams) -> str | None:
    """The Claude session a request will write to, when it can be known before the start."""
    if params.claude_session is not None:
        return params.claude_session
    if params.continue_session and not params.fork_session:
        return f"continue:{os.path.realpath(params.cwd or os.getcwd())}"
    return None


def plan_claude(
    daemon: Daemon, params: ClaudeParams, owner: str, *, durable: bool = False
) -> RunPlan:
    """The plan of a `claude` request, vetted by policy (raises the wire's errors)."""
    config = daemon.config.claude
    session = params.session
    if (
        not session
        and params.prompt is not None
        and len(params.prompt.encode()) > config.max_prompt_bytes
    ):
        raise InvalidParams(
            f"the prompt is longer than {config.max_prompt_bytes} bytes; send it with "
            "input 'stream-json' through stdin",
            {"limit": "claude.max_prompt_bytes", "value": config.max_prompt_bytes},
        )
    spec = vet_claude(
        daemon,
        params,
        owner,
        daemon.new_run_id(durable or params.durable),
        "pipe" if params.input == "stream-json" or session else "null",
    )
    settings = WatchSettings(
        idle_timeout=params.idle_timeout
        if params.idle_timeout is not None
        else config.idle_timeout,
        idle_action=params.idle_action or config.idle_action,
        post_result_grace=config.post_result_grace,
        max_line_bytes=config.max_line_bytes,
        session=session,
    )
    key = session_key(params)
    observe = _watcher(settings, key)
    if session:
        observe = _session(
            settings,
            key,
            SessionSettings(
                control_timeout=config.control_timeout,
                close_grace=config.close_grace,
                permissions=PermissionSettings(
                    config.permission_timeout,
                    config.permission_default,
                    config.permission_rules,
                    daemon.config.supervision.stdin_max_pending,
                ),
                prompt=params.prompt,
            ),
        )
    return RunPlan(
        kind="claude",
        spec=spec,
        supervision=attrs.evolve(daemon.config.supervision, interrupt_grace=config.interrupt_grace),
        timeout=params.timeout if params.timeout is not None else config.timeout,
        idle_timeout=None,  # the watchdog, on the stream-json events, is the idle limit
        durable=durable or params.durable,
        exclusive=key,
        observe=observe,
        session=session,
    )


def _watcher(settings: WatchSettings, key: str | None) -> ObserverFactory:
    def make(
        run: Run, claims: Claims, notify: Callable[[ClaudeEvent], Awaitable[None]], post: Post
    ) -> ClaudeWatch:
        return ClaudeWatch(run, settings, claims, [] if key is None else [key], notify)

    return make


def _session(settings: WatchSettings, key: str | None, session: SessionSettings) -> ObserverFactory:
    watcher = _watcher(settings, key)

    def make(
        run: Run, claims: Claims, notify: Callable[[ClaudeEvent], Awaitable[None]], post: Post
    ) -> ClaudeSession:
        watch = watcher(run, claims, notify, post)
        assert isinstance(watch, ClaudeWatch)
        return ClaudeSession(run, watch, session, post)

    return make
