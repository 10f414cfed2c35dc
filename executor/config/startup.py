"""Start-up variables: environment variables that make a program load or run other code first.

The dynamic loader's, the shells' and the interpreters' variables reach into any program an
allow-list admits: ``LD_PRELOAD`` runs a library's constructor inside ``cat``, ``BASH_ENV`` a
script before any bash script, ``NODE_OPTIONS=--require`` a module inside any node program.
Requests may not set them unless the policy file names them (``[env] startup_allow``; the rule
is enforced in runs/environment.py).

The list is deliberate, not complete: each entry below says why it is there.  Tool-specific
variables that run commands (``GIT_SSH_COMMAND``, ``EDITOR``, ``PAGER`` ...) belong to the
tools an operator allows, and ``[env] request_allow`` is the way to keep them out.
"""

from __future__ import annotations

# Whole families: the glibc/musl loader (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT...), the macOS
# loader, and bash's exported functions (BASH_FUNC_ls%%=() { ...; } replaces a command).
STARTUP_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_")

STARTUP_NAMES = frozenset(
    {
        # glibc: iconv modules are shared objects loaded from here; tunables have had
        # exploitable parsing bugs (CVE-2023-4911).
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        # Shells: files sourced at start, options that trace through PS4 command substitution,
        # the field separator old shells split commands with.
        "BASH_ENV",
        "ENV",
        "ZDOTDIR",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        # Python: start-up files, module search paths, and warning filters (which import the
        # module a category names).
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUSERBASE",
        "PYTHONPLATLIBDIR",
        "PYTHONEXECUTABLE",
        "PYTHONWARNINGS",
        "PYTHONBREAKPOINT",
        # Node: --require, --import and --loader arrive through NODE_OPTIONS.
        "NODE_OPTIONS",
        "NODE_PATH",
        # Perl and Ruby: options and library paths read before the script.
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        # The JVM: -javaagent and friends.
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
    }
)

# The Claude CLI's own variables (CLAUDE_CONFIG_DIR, CLAUDE_ENV_FILE, CLAUDE_CODE_SHELL_PREFIX,
# ...): start-up variables for runs of the CLI.  The operator sets them with claude.env.
CLAUDE_STARTUP_PREFIXES = ("CLAUDE_",)


def is_startup_variable(name: str, *, claude: bool = False) -> bool:
    """True if `name` is a start-up variable (for a run of the Claude CLI when `claude`)."""
    if name in STARTUP_NAMES or name.startswith(STARTUP_PREFIXES):
        return True
    return claude and name.startswith(CLAUDE_STARTUP_PREFIXES)
