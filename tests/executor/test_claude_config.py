"""The Claude profile's configuration from CCX_CLAUDE_* variables."""

from __future__ import annotations

import pytest

from cc_executor.executor.config.claude import (
    DEFAULT_ALLOWED_FLAGS,
    ClaudeConfig,
    claude_config_from_env,
)
from cc_executor.executor.config.server import ConfigError, config_from_env


def test_defaults() -> None:
    config = claude_config_from_env({})
    assert config == ClaudeConfig()
    assert config.sandboxed is False
    assert config.busy_session == "refuse"
    assert config.allowed_flags == DEFAULT_ALLOWED_FLAGS
    assert "--dangerously-skip-permissions" not in config.allowed_flags


def test_every_variable() -> None:
    config = claude_config_from_env(
        {
            "CCX_CLAUDE_BINARY": "/opt/claude",
            "CCX_CLAUDE_BASE_URL": "http://127.0.0.1:9",
            "CCX_CLAUDE_API_KEY_ENV": "MY_KEY",
            "CCX_CLAUDE_ENV": "DISABLE_TELEMETRY=1,CLAUDE_CONFIG_DIR=/x=y",
            "CCX_CLAUDE_SANDBOXED": "true",
            "CCX_CLAUDE_IDLE_TIMEOUT": "0",
            "CCX_CLAUDE_IDLE_ACTION": "interrupt",
            "CCX_CLAUDE_POST_RESULT_GRACE": "2.5",
            "CCX_CLAUDE_INTERRUPT_GRACE": "1",
            "CCX_CLAUDE_TIMEOUT": "3600",
            "CCX_CLAUDE_BUSY_SESSION": "queue",
            "CCX_CLAUDE_ALLOWED_FLAGS": "--add-dir,--model",
            "CCX_CLAUDE_MCP_CONFIGS": "/etc/ccx/a.json,/etc/ccx/b.json",
        }
    )
    assert config.binary == "/opt/claude"
    assert config.base_url == "http://127.0.0.1:9"
    assert config.api_key_env == "MY_KEY"
    assert config.env == {"DISABLE_TELEMETRY": "1", "CLAUDE_CONFIG_DIR": "/x=y"}
    assert config.sandboxed is True
    assert config.idle_timeout is None
    assert config.idle_action == "interrupt"
    assert config.post_result_grace == 2.5
    assert config.interrupt_grace == 1.0
    assert config.timeout == 3600.0
    assert config.busy_session == "queue"
    assert config.allowed_flags == ("--add-dir", "--model")
    assert config.mcp_configs == ("/etc/ccx/a.json", "/etc/ccx/b.json")


def test_the_daemon_config_carries_it() -> None:
    assert config_from_env({"CCX_CLAUDE_SANDBOXED": "1"}).claude.sandboxed is True


@pytest.mark.parametrize(
    "env",
    [
        {"CCX_CLAUDE_SANDBOXED": "maybe"},
        {"CCX_CLAUDE_IDLE_ACTION": "explode"},
        {"CCX_CLAUDE_BUSY_SESSION": "wait"},
        {"CCX_CLAUDE_IDLE_TIMEOUT": "soon"},
        {"CCX_CLAUDE_ENV": "NOVALUE"},
        {"CCX_CLAUDE_POST_RESULT_GRACE": "-1"},
        {"CCX_CLAUDE_MCP_CONFIGS": "relative/mcp.json"},
    ],
)
def test_bad_settings_are_named(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        claude_config_from_env(env)
