"""The `warden` command's argument parser: every command and flag says what it does and its
default in `--help`, and the global flags (`--log-level`, `--version`) are taken before the
command or after it (`warden serve -c x.yaml --log-level debug`)."""

from __future__ import annotations

import argparse
import platform

from warden import __version__

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "INFO"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`(default: X)` after a flag's help, unless there is nothing to say (no default, a
    switch that is off, an empty list) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or default == [] or "default" in (action.help or "")):
            return action.help
        return super()._get_help_string(action)


class WardenParser(argparse.ArgumentParser):
    """A parser whose commands (and their commands) are parsers like it: each takes the
    global flags too, and has its one-line help as its description."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)


class _Commands(argparse._SubParsersAction):
    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        parser = super().add_parser(name, **kwargs)
        add_global_flags(parser, after_command=True)
        return parser


def add_global_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """`--log-level` and `--version`. After a command the flag's default is SUPPRESS, so that
    a level given before the command is not reset by the command's parser."""
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, metavar="LEVEL",
                        default=argparse.SUPPRESS if after_command else DEFAULT_LOG_LEVEL,
                        action=_LogLevel,
                        help=f"log this level and above: {', '.join(LOG_LEVELS)} (any case; "
                        f"default: {DEFAULT_LOG_LEVEL}, or `serve`'s logging.level)")
    parser.add_argument("--version", action=_Version,
                        help="print the version, and whether the compiled data path runs")


class _LogLevel(argparse.Action):
    """Stores the level, and that it was given (`log_level_given`): given, it wins over a
    config's `logging.level`."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.log_level_given = True


class _Version(argparse.Action):
    """Prints the version and the build: `compiled`, `interpreted` or `partly compiled` (it
    imports the data path to tell, so it runs only when asked)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: object = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from warden.compiled import describe

        print(f"warden {__version__} (data path {describe()}; Python "
              f"{platform.python_version()})")
        parser.exit()


def new_parser(description: str) -> WardenParser:
    parser = WardenParser(prog="warden", description=description)
    add_global_flags(parser, after_command=False)
    return parser
