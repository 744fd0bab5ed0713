"""The README's examples work as shown: every YAML block is a valid gateway config (or, with
`nodes:`, a valid simulator fleet), the example config file is too and names every routing
policy, the custom-rule example does what the text beside it says, and every `warden` command
shown parses. And the README stands alone in a clone: its links (and the docs') resolve inside
the repository, it uses none of the project's internal jargon, and its config table names
every setting."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
import pytest
import yaml
from pydantic import BaseModel

from warden import cli
from warden.config import Settings
from warden.config.routing_schema import RoutingSpec
from warden.config.schema import BackendSpec, TimeoutsSpec
from warden.fleet.backend import Backend
from warden.guard.guard import Guard
from warden.settings import parse_settings
from warden.sim.profiles import load_fleet

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BACKENDS = [{"name": "a", "url": "http://127.0.0.1:18090"}]


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_every_yaml_example_in_the_readme_loads(tmp_path):
    blocks = yaml_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        raw = yaml.safe_load(block)
        if "nodes" in raw:  # a simulator fleet (warden sim --fleet)
            path = tmp_path / "fleet.yaml"
            path.write_text(block)
            assert load_fleet(path)
        else:  # a config, or a part of one shown on its own
            parse_settings({"backends": BACKENDS, **raw}, {"VLLM_API_KEY": "k"})


def test_the_example_config_loads_and_names_every_policy():
    text = (ROOT / "examples" / "warden.yaml").read_text()
    parse_settings(yaml.safe_load(text), {})
    policies = RoutingSpec.model_fields["policy"].annotation.__args__
    assert len(policies) == 6 and all(policy in text for policy in policies)


def test_the_custom_rule_example_behaves_as_described():
    block = next(b for b in yaml_blocks() if "cap-max-tokens" in b)
    settings = parse_settings({"backends": BACKENDS, **yaml.safe_load(block)}, {})
    guard = Guard(settings.guard)
    small = Backend(BackendSpec(name="small", url="http://127.0.0.1:1"), TimeoutsSpec())
    big = Backend(BackendSpec(name="big", url="http://127.0.0.1:2",
                              safe_for=["long-outputs-to-big-nodes"]), TimeoutsSpec())

    def admit(max_tokens: int, role: str = "user"):
        body = {"model": "m", "max_tokens": max_tokens,
                "messages": [{"role": role, "content": "hi"}]}
        return body, guard.judge("/v1/chat/completions", "m", body, orjson.dumps(body),
                                 [small, big])

    body, outcome = admit(50000)
    assert body["max_tokens"] == 32768 and outcome.only == {"big"}
    body, outcome = admit(10000)
    assert body["max_tokens"] == 10000 and outcome.only == {"big"}
    assert admit(100)[1] is None
    outcome = admit(100, role="developer")[1]
    assert outcome.rejection.message.startswith("the developer role is not served here")


# --- The README stands alone: links resolve, no internal jargon, real commands --------------

DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped (hyphens and
    underscores kept), spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    prose = FENCE.sub("", markdown)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", prose, re.M)}


def links(markdown: str) -> list[str]:
    return LINK.findall(FENCE.sub("", markdown))


def test_slug_is_githubs():
    assert slug("Headers and what clients see of the backends") == \
        "headers-and-what-clients-see-of-the-backends"
    assert slug("bench.calibrate, bench.sim_vs_vllm, bench.sim_cost") == \
        "benchcalibrate-benchsim_vs_vllm-benchsim_cost"
    assert slug("Work on the recorder's cost, and what comes next") == \
        "work-on-the-recorders-cost-and-what-comes-next"


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_link_resolves(path):
    """An `](#anchor)` matches a heading of the same file; a relative link names a file of
    the repository (and, with `#anchor`, one of its headings); nothing points outside it."""
    text = path.read_text(encoding="utf-8")
    assert links(text), "a file with no links: the pattern is wrong"
    assert [target for target in links(text) if not resolves(path, target)] == []


def resolves(path: Path, target: str) -> bool:
    if target.startswith(("http://", "https://")):
        return True
    file, _, anchor = target.partition("#")
    linked = (path.parent / file).resolve() if file else path
    if ROOT not in linked.parents or not linked.exists():
        return False
    return not anchor or anchor in anchors(linked.read_text(encoding="utf-8"))


# Words that mean something only inside the project's own work, case-insensitive. Allowed
# exceptions are real features that happen to use the word: the stickiness setting
# (`routing.session` and its example header) and the OpenAI request parameter `seed`.
JARGON = re.compile(r"session|seed|helper|issue \d|\.\./|/work/|shared/|design\.md", re.I)
ALLOWED = re.compile(r"routing\.session|x-session-id|`seed`", re.I)


def test_the_readme_has_no_internal_jargon():
    found = [(n, line) for n, line in enumerate(README.splitlines(), 1)
             if JARGON.search(ALLOWED.sub("", line))]
    assert found == []


def test_the_jargon_check_would_catch_it():
    for line in ("as the seed's request does", "issue 4's target", "this session's run",
                 "see ../shared/vllm", "DESIGN.md says"):
        assert JARGON.search(ALLOWED.sub("", line)), line
    assert not JARGON.search(ALLOWED.sub("", "`routing.session: {header: x-session-id}`"))


def bash_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            # (each command of a pipeline into warden, too: `echo "$KEY" | warden keys hash`)
            for command in re.split(r"&&| \| (?=warden )", line):
                if command.strip():
                    lines.append(command.strip())
    return lines


def test_every_bash_example_is_a_real_command():
    commands = bash_lines()
    assert len(commands) >= 20
    programs = {shlex.split(c, comments=True)[0] for c in commands}
    assert programs <= {"warden", "pip", "pytest", "ruff", "mypy", "curl", "echo",
                        "docker", "kubectl", "systemctl", "deploy/build.sh"}, programs
    # (What the deployment commands name is in the repository.)
    for command in commands:
        for word in shlex.split(command, comments=True):
            if word.startswith("deploy/"):
                assert (ROOT / word).exists(), command


def test_every_warden_example_parses():
    """Each `warden ...` line of the README's bash blocks is accepted by the real parser:
    the command exists and so does every flag (parsed only, nothing runs)."""
    parser = cli._parser()
    examples = [c for c in bash_lines() if c.startswith("warden ")]
    assert len(examples) >= 15
    for example in examples:
        argv = shlex.split(example, comments=True)[1:]
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # argparse's way of refusing
            pytest.fail(f"not a valid command: {example}")
        assert callable(args.command), example


def setting_names(model: type[BaseModel]) -> set[str]:
    """Every field name of the settings as the file spells it (its alias, if it has one),
    nested ones included."""
    names = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        for kind in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                names |= setting_names(kind)
            for inner in getattr(kind, "__args__", ()):  # list[Spec], dict[str, Spec]
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= setting_names(inner)
    return names


def test_the_config_table_names_every_setting():
    section = README.split("## Configure", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for name in setting_names(Settings)
                     if not re.search(rf"[`.]{name}\b", section))
    assert missing == []
