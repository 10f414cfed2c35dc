"""The requests that steer a live Claude session run, and the stdin lines they become.

A session run (`claude {session: true}`) is one CLI process for many turns; these params
classes are the `claude.*` methods that drive it (docs/claude.md, "Sessions").  Each is
checked like every other params class: a bad value is a -32602 naming its field, before
anything reaches the CLI.  The `*_line` functions are the stream-json the daemon writes to the
CLI's stdin (a user message, a control request, the answer to one of the CLI's requests) —
one JSON object per line, as the Agent SDKs write them.
"""

from typing import Any, Literal

import attrs
import orjson

from cc_executor.protocol.claude.params import (
    ClaudeParams,
    IdleAction,
    PermissionMode,
    _check_text,
    _check_tools,
    _check_uuid,
    _optional_positive,
    _optional_positive_int,
)
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.params import ParamError

Behavior = Literal["allow", "deny"]
SessionState = Literal["idle", "running", "requires_action", "paused"]

# How long a client's message id may be.
MAX_MESSAGE_ID = 200
# How long a permission answer's message may be (it goes to the CLI and to every follower).
MAX_PERMISSION_MESSAGE = 64 * 1024


def _check_run(run: str) -> None:
    if not run:
        raise ParamError(".run", "must name a run")


def _check_content(content: Any) -> None:
    if isinstance(content, str):
        if not content.strip():
            raise ParamError(".content", "must not be empty")
        return
    if not isinstance(content, list) or not content:
        raise ParamError(".content", "must be a string or a non-empty array of content blocks")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise ParamError(f".content[{i}]", "must be a content block (an object with a type)")
        # The CLI reads a text block's text as a string: any other ends the whole session.
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise ParamError(f".content[{i}].text", "a text block's text must be a string")


@attrs.frozen
class ClaudeSendParams:
    """`claude.send`: a user message (text or content blocks) for a session run."""

    run: str
    content: Any  # str | list of content-block objects (checked below)
    id: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_run(self.run)
        _check_content(self.content)
        if self.id is not None:
            if not self.id or len(self.id) > MAX_MESSAGE_ID:
                raise ParamError(".id", f"must be 1 to {MAX_MESSAGE_ID} characters")
            _check_text(".id", self.id)


@attrs.frozen
class ClaudeInterruptParams:
    """`claude.interrupt`: end the running turn; the session stays."""

    run: str

    def __attrs_post_init__(self) -> None:
        _check_run(self.run)


@attrs.frozen
class ClaudeCloseParams:
    """`claude.close`: end the session (stdin EOF, a bounded wait, then the ladder)."""

    run: str

    def __attrs_post_init__(self) -> None:
        _check_run(self.run)


@attrs.frozen
class ClaudeSetModelParams:
    """`claude.set_model`: the model of the session's next requests."""

    run: str
    model: str

    def __attrs_post_init__(self) -> None:
        _check_run(self.run)
        if not self.model.strip():
            raise ParamError(".model", "must not be empty")
        _check_text(".model", self.model)


@attrs.frozen
class ClaudeSetPermissionModeParams:
    """`claude.set_permission_mode`: the session's permission mode from now on."""

    run: str
    mode: PermissionMode

    def __attrs_post_init__(self) -> None:
        _check_run(self.run)


@attrs.frozen
class ClaudePermissionParams:
    """`claude.permission`: answer a pending permission request of a session run."""

    run: str
    request: str
    behavior: Behavior
    updated_input: dict[str, Any] | None = None
    message: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_run(self.run)
        if not self.request:
            raise ParamError(".request", "must name a permission request")
        if self.updated_input is not None and self.behavior != "allow":
            raise ParamError(".updated_input", "only with behavior 'allow'")
        if self.message is not None:
            if len(self.message) > MAX_PERMISSION_MESSAGE:
                raise ParamError(".message", f"must be at most {MAX_PERMISSION_MESSAGE} characters")
            _check_text(".message", self.message)


@attrs.frozen
class ClaudeResumeParams:
    """`claude.resume`: a new session run continuing Claude session `session` (`--resume`)."""

    session: str
    prompt: str | None = None
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    model: str | None = None
    max_turns: int | None = attrs.field(default=None, validator=_optional_positive_int)
    fork_session: bool = False
    session_id: str | None = None
    permission_mode: PermissionMode | None = None
    include_partial_messages: bool = False
    extra_args: tuple[str, ...] = ()
    cwd: str | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    idle_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    idle_action: IdleAction | None = None
    durable: bool = False

    def __attrs_post_init__(self) -> None:
        _check_uuid(".session", self.session)
        _check_tools(".allowed_tools", self.allowed_tools)
        _check_tools(".disallowed_tools", self.disallowed_tools)
        self.claude_params()  # the same checks as the `claude` request it stands for

    def claude_params(self) -> ClaudeParams:
        """The `claude {session: true, resume: <session>, ...}` request this one is."""
        shared = {
            field.name: getattr(self, field.name)
            for field in attrs.fields(ClaudeResumeParams)
            if field.name != "session"
        }
        return ClaudeParams(session=True, resume=self.session, **shared)


# -- what the daemon writes to the CLI's stdin ---------------------------------------------


def _line(obj: dict[str, JSON]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def user_line(content: JSON, uuid: str) -> bytes:
    """A user message; the CLI replays it with the same `uuid` when it takes it."""
    return _line(
        {
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": None,
            "session_id": "default",
            "uuid": uuid,
        }
    )


def control_request_line(request_id: str, request: dict[str, JSON]) -> bytes:
    """A control request of the daemon's (`initialize`, `interrupt`, `set_model`, ...)."""
    return _line({"type": "control_request", "request_id": request_id, "request": request})


def control_success_line(request_id: str, response: dict[str, JSON]) -> bytes:
    """The answer to one of the CLI's requests (a permission decision)."""
    return _line(
        {
            "type": "control_response",
            "response": {"subtype": "success", "request_id": request_id, "response": response},
        }
    )


def control_error_line(request_id: str, error: str) -> bytes:
    """The error answer to one of the CLI's requests (one the daemon does not handle)."""
    return _line(
        {
            "type": "control_response",
            "response": {"subtype": "error", "request_id": request_id, "error": error},
        }
    )


def permission_response(
    behavior: Behavior, tool_input: JSON, updated_input: JSON | None, message: str | None
) -> dict[str, JSON]:
    """The `response` of a `can_use_tool` answer: allow (with the input to use) or deny."""
    if behavior == "allow":
        return {
            "behavior": "allow",
            "updatedInput": tool_input if updated_input is None else updated_input,
        }
    return {"behavior": "deny", "message": message or "denied"}
