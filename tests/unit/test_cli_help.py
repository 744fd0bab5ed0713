"""`warden --help` and every command's: each command and flag says what it does and, when it
has one, its default; the global flags work before and after the command; the admin commands
find the gateway a config runs."""

from __future__ import annotations

import argparse
import socket
import threading

import pytest

from warden.cli import _parser
from warden.cli_parser import HelpFormatter


def _parsers(parser: argparse.ArgumentParser, name: str = "warden"):
    """(its name, the parser) for `parser` and every command below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {command}")


def _has_default(action: argparse.Action) -> bool:
    default = action.default
    return not (default is None or default is False or default is argparse.SUPPRESS
                or default == [])


def test_every_command_and_flag_says_what_it_does_and_its_default():
    missing = []
    for name, parser in _parsers(_parser()):
        if not parser.description:
            missing.append(f"{name}: no description")
        formatter = HelpFormatter(name)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {choice.dest}: no help" for choice in
                            action._choices_actions if not choice.help]
                continue
            flag = "/".join(action.option_strings) or action.dest
            text = formatter._get_help_string(action) or ""
            if not (action.help or "").strip():
                missing.append(f"{name} {flag}: no help")
            elif _has_default(action) and "default" not in text:
                missing.append(f"{name} {flag}: default {action.default!r} not said")
    assert not missing, "\n".join(missing)


def test_a_default_is_printed_in_the_help():
    demo = dict(_parsers(_parser()))["warden demo"]
    assert "(default: 18090)" in demo.format_help()


@pytest.mark.parametrize("argv", [
    ["--log-level", "debug", "check-config", "-c", "x.yaml"],
    ["check-config", "-c", "x.yaml", "--log-level", "Debug"],
    ["audit", "search", "--log-level", "DEBUG"],
])
def test_log_level_before_or_after_the_command_any_case(argv):
    assert _parser().parse_args(argv).log_level == "DEBUG"


def test_log_level_defaults_to_info_even_with_the_command():
    assert _parser().parse_args(["check-config", "-c", "x.yaml"]).log_level == "INFO"


def test_an_unknown_log_level_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["--log-level", "LOUD", "check-config", "-c", "x.yaml"])
    assert exit_.value.code == 2
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--version"], ["serve", "--version"]])
def test_version_says_which_build_runs(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("warden ")
    assert any(build in out for build in ("compiled", "interpreted")), out


@pytest.mark.parametrize(("listen", "url"), [
    ("127.0.0.1:8100", "http://127.0.0.1:8100"), ("0.0.0.0:8100", "http://127.0.0.1:8100"),
    ("'[::1]:8100'", "http://[::1]:8100"), ("'[::]:8100'", "http://127.0.0.1:8100"),
    ("0.0.0.0:8100\nadmin_listen: 127.0.0.1:9100", "http://127.0.0.1:9100"),  # its own
])
def test_admin_commands_reach_the_gateway_a_config_runs(tmp_path, listen, url):
    from warden.cli_admin import gateway_url

    config = tmp_path / "warden.yaml"
    config.write_text(f"listen: {listen}\nbackends: [{{name: a, url: 'http://127.0.0.1:9'}}]\n")
    assert gateway_url(argparse.Namespace(url=None, config=str(config))) == url


def test_an_admin_url_that_is_no_url_is_one_line_not_a_traceback(capsys):
    from warden.cli_admin import call

    assert call("reload", "gateway/admin/reload", post=True) is None
    assert capsys.readouterr().err == \
        "reload: gateway/admin/reload is not a URL (expected http://host:port)\n"


@pytest.mark.parametrize("answer, says", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "did not answer HTTP (BadStatusLine: is it a Warden gateway?)"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]",
     "did not answer as a Warden gateway of this version does (a JSON object with policy, "
     "backends)"),
    (b'HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{"status":"ok"}',
     "(a JSON object with policy, backends)"),
])
def test_an_answer_that_is_not_the_gateways_is_one_line_not_a_traceback(capsys, answer, says):
    """The wrong port given: another server's answer (not HTTP, or JSON of another shape)."""
    from warden.cli_admin import call

    server = socket.create_server(("127.0.0.1", 0))

    def answer_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/admin/backends"
    try:
        assert call("warden backends", url, expect=("policy", "backends")) is None
    finally:
        thread.join(timeout=10)
        server.close()
    err = capsys.readouterr().err
    assert err.startswith(f"warden backends: {url} ") and says in err and err.count("\n") == 1
