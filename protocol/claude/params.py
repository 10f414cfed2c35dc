"""The `claude` request and its argv, without I/O.

A `claude` request (ClaudeParams) is validated like every other params class and turned by
`build_argv` into `claude -p ... --output-format stream-json --verbose` with the prompt after
`--`, so a prompt can never be read as a flag.  A session (`session: true`) is the CLI's
long-lived two-way mode instead: no `-p`, stream-json in and out, permission prompts asked
over stdio, the user messages replayed (so the daemon sees when each is taken); its ids are
given in the `--flag=value` form and nothing positional follows, so no value can be read as a
flag.
"""

import re
from typing import Any, Literal

import attrs

from cc_executor.protocol.params import ParamError

_UUID = re.compile(
    r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)

IdleAction = Literal["report", "interrupt", "cancel"]
PermissionMode = Literal["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"]


def _check_text(where: str, value: str) -> None:
    if "\0" in value:
        raise ParamError(where, "must not contain a NUL byte")


def _check_tools(where: str, tools: tuple[str, ...]) -> None:
    for i, tool in enumerate(tools):
        _check_text(f"{where}[{i}]", tool)
        if not tool.strip() or tool.startswith("-"):
            raise ParamError(f"{where}[{i}]", "must name a tool (and not start with '-')")


def _check_uuid(where: str, value: str | None) -> None:
    if value is not None and not _UUID.match(value):
        raise ParamError(where, "must be a Claude session id (a UUID)")


def _optional_positive(_: object, field: "attrs.Attribute[Any]", value: float | None) -> None:
    if value is not None and not (value > 0 and value != float("inf")):
        raise ParamError(f".{field.name}", "must be a positive number of seconds")


def _optional_positive_int(_: object, field: "attrs.Attribute[Any]", value: int | None) -> None:
    if value is not None and value <= 0:
        raise ParamError(f".{field.name}", "must be a positive integer")


@attrs.frozen
class ClaudeParams:
    """Start a Claude Code run (`claude -p`), its stream-json parsed into typed events.

    With `input: "text"` the prompt is an argument and stdin is /dev/null; with
    `input: "stream-json"` stdin is a pipe the client writes stream-json user messages to
    (`stdin` method) and `prompt` must be absent.  With `session: true` the run is a live
    session: the daemon owns stdin (messages go through `claude.send`), `prompt`, if given,
    is the first message, and a `result` ends a turn, not the run.
    """

    prompt: str | None = None
    input: Literal["text", "stream-json"] = "text"
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    model: str | None = None
    max_turns: int | None = attrs.field(default=None, validator=_optional_positive_int)
    resume: str | None = None
    continue_session: bool = False
    session_id: str | None = None
    fork_session: bool = False
    permission_mode: PermissionMode | None = None
    dangerously_skip_permissions: bool = False
    include_partial_messages: bool = False
    extra_args: tuple[str, ...] = ()
    cwd: str | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    idle_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    idle_action: IdleAction | None = None
    # Durable: the run outlives its connection, journaled like a durable `execute`.
    durable: bool = False
    # A live session: many turns in one process, steered through the claude.* methods.
    session: bool = False

    def __attrs_post_init__(self) -> None:
        if self.session:
            if self.input != "text":
                raise ParamError(".input", "a session takes its messages through claude.send")
            if self.prompt is not None and not self.prompt.strip():
                raise ParamError(".prompt", "must not be empty (leave it out to start idle)")
        elif self.input == "text":
            if self.prompt is None or not self.prompt.strip():
                raise ParamError(".prompt", "is required (and not empty) with input 'text'")
        elif self.prompt is not None:
            raise ParamError(".prompt", "not allowed with input 'stream-json': write to stdin")
        if self.prompt is not None:
            _check_text(".prompt", self.prompt)
        _check_tools(".allowed_tools", self.allowed_tools)
        _check_tools(".disallowed_tools", self.disallowed_tools)
        for where, text in ((".model", self.model), (".cwd", self.cwd)):
            if text is not None:
                _check_text(where, text)
                if not text:
                    raise ParamError(where, "must not be empty")
        _check_uuid(".resume", self.resume)
        _check_uuid(".session_id", self.session_id)
        if self.resume is not None and self.continue_session:
            raise ParamError("", "resume and continue_session exclude each other")
        resuming = self.resume is not None or self.continue_session
        if self.fork_session and not resuming:
            raise ParamError(".fork_session", "only with resume or continue_session")
        if self.session_id is not None and resuming and not self.fork_session:
            raise ParamError(".session_id", "with resume or continue_session needs fork_session")
        for i, arg in enumerate(self.extra_args):
            _check_text(f".extra_args[{i}]", arg)
            if arg == "--":
                raise ParamError(f".extra_args[{i}]", "'--' is placed by the daemon")
        for key, value in self.env.items():
            where = f".env[{key!r}]"
            if not key or "=" in key:
                raise ParamError(where, "a variable name must be non-empty and without '='")
            _check_text(where, key)
            _check_text(where, value)

    @property
    def claude_session(self) -> str | None:
        """The Claude session this run will write to, when known before it starts."""
        if self.fork_session:
            return self.session_id
        return self.resume or self.session_id


SESSION_FLAGS = (
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
    "--permission-prompt-tool",
    "stdio",
    "--replay-user-messages",
)


def build_argv(binary: str, params: ClaudeParams) -> tuple[str, ...]:
    """`claude -p ... --output-format stream-json --verbose [flags] -- <prompt>`, or a
    session's `claude --input-format stream-json ... [--flag=value ...] [tool lists]`."""
    if params.session:
        return _session_argv(binary, params)
    argv = [binary, "-p", "--output-format", "stream-json", "--verbose"]
    if params.input == "stream-json":
        argv += ["--input-format", "stream-json"]
    if params.include_partial_messages:
        argv.append("--include-partial-messages")
    if params.model is not None:
        argv += ["--model", params.model]
    if params.max_turns is not None:
        argv += ["--max-turns", str(params.max_turns)]
    if params.resume is not None:
        argv += ["--resume", params.resume]
    if params.continue_session:
        argv.append("--continue")
    if params.fork_session:
        argv.append("--fork-session")
    if params.session_id is not None:
        argv += ["--session-id", params.session_id]
    if params.permission_mode is not None:
        argv += ["--permission-mode", params.permission_mode]
    if params.dangerously_skip_permissions:
        argv.append("--dangerously-skip-permissions")
    # The tool lists are variadic options: each is followed by another option or by `--`.
    if params.allowed_tools:
        argv += ["--allowedTools", *params.allowed_tools]
    if params.disallowed_tools:
        argv += ["--disallowedTools", *params.disallowed_tools]
    argv += params.extra_args
    if params.prompt is not None:
        argv += ["--", params.prompt]
    return tuple(argv)


def _session_argv(binary: str, params: ClaudeParams) -> tuple[str, ...]:
    argv = [binary, *SESSION_FLAGS]
    if params.include_partial_messages:
        argv.append("--include-partial-messages")
    if params.model is not None:
        argv.append(f"--model={params.model}")
    if params.max_turns is not None:
        argv.append(f"--max-turns={params.max_turns}")
    if params.resume is not None:
        argv.append(f"--resume={params.resume}")
    if params.continue_session:
        argv.append("--continue")
    if params.fork_session:
        argv.append("--fork-session")
    if params.session_id is not None:
        argv.append(f"--session-id={params.session_id}")
    if params.permission_mode is not None:
        argv.append(f"--permission-mode={params.permission_mode}")
    if params.dangerously_skip_permissions:
        argv.append("--dangerously-skip-permissions")
    argv += params.extra_args
    # The variadic tool lists come last: nothing follows them that they could swallow.
    if params.allowed_tools:
        argv += ["--allowedTools", *params.allowed_tools]
    if params.disallowed_tools:
        argv += ["--disallowedTools", *params.disallowed_tools]
    return tuple(argv)
