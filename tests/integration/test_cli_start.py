"""Starting Warden as a new user does: the demo's printed commands run as pasted, and a port
already in use costs one line naming the flag (or setting) that changes it, before anything
has started."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procs import free_port_block
from tests.harness import running_demo
from warden.run import port_taken


def warden(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          text=True, timeout=60, **kwargs)


@pytest.fixture
def demo_banner(tmp_path: Path) -> Iterator[str]:
    with running_demo(tmp_path) as (banner, _):
        yield banner


def _commands(banner: str) -> list[str]:
    """The banner's commands as a user copies them: the blocks between "Try it" and the
    openai line, separated by blank lines."""
    section = banner.split("Try it", 1)[1].split("\n", 1)[1].split("With the openai SDK")[0]
    return [block for block in section.split("\n\n") if block.strip()]


def test_every_command_the_demo_prints_runs_as_pasted(demo_banner: str):
    commands = _commands(demo_banner)
    assert len(commands) == 3, commands
    imported = {name.strip().split(".")[0] for line in commands[2].splitlines()
                if line.startswith("import ") for name in line[len("import "):].split(",")}
    imported |= {line.split()[1].split(".")[0] for line in commands[2].splitlines()
                 if line.startswith("from ")}
    assert imported and imported <= sys.stdlib_module_names, imported  # no openai needed
    outputs = []
    for command in commands:
        # A bare environment: the system's python3 if it has one, nothing of a virtualenv.
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                timeout=30,
                                env={"PATH": f"/usr/bin:/bin:{Path(sys.executable).parent}"})
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        outputs.append(result.stdout)
    unary, streamed, python = outputs
    assert '"choices"' in unary
    assert streamed.rstrip().endswith("data: [DONE]")
    assert python.strip() and "data:" not in python  # the text, not the events


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_demo_with_its_port_taken_says_so_in_one_line_before_starting(tmp_path: Path,
                                                                     taken_port: int):
    sim_port = free_port_block(3)
    result = warden("demo", "--port", str(taken_port), "--sim-port", str(sim_port),
                    cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"warden demo: cannot listen on 127.0.0.1:{taken_port}: Address already in use "
        "(choose another port with --port)"]
    assert not (tmp_path / "warden-records").exists()  # nothing started
    assert port_taken("127.0.0.1", range(sim_port, sim_port + 3)) is None


def test_demo_with_a_sim_port_taken_names_sim_port(tmp_path: Path, taken_port: int):
    result = warden("demo", "--port", str(free_port_block(1)), "--sim-port",
                    str(taken_port), cwd=tmp_path)
    assert result.returncode == 2
    assert "(choose another port with --sim-port)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sim_with_its_port_taken_says_so_in_one_line(taken_port: int):
    result = warden("sim", "--port", str(taken_port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"warden sim: cannot listen on 127.0.0.1:{taken_port}: Address already in use "
        "(choose another port with --port)"]


def test_serve_with_its_port_taken_names_listen_before_starting(tmp_path: Path,
                                                               taken_port: int):
    config = tmp_path / "warden.yaml"
    config.write_text(f"listen: 127.0.0.1:{taken_port}\nbackends:\n"
                      "  - {name: a, url: 'http://127.0.0.1:9'}\n")
    result = warden("serve", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"warden serve: cannot listen on 127.0.0.1:{taken_port}: Address already in use "
        f"(change `listen` in {config})"]
    assert not (tmp_path / "warden-records").exists()  # the recorder did not start
