"""The interface documentation in docs/ keeps up with the code: every configuration key
the loader knows, every subcommand and option of the command line, every scenario key
and step, and every transcript event is documented (a key added without its line in
the docs fails here, not in a user's hands)."""

import argparse
import re

import pytest

from conftest import ROOT
from linebox import cli, config
from linebox.sim import scenario

DOCS = ROOT / "docs"


def sections(path, level: str = "## ") -> dict[str, str]:
    """The text under each heading of ``level`` in a Markdown file, by heading."""
    out: dict[str, str] = {}
    heading = None
    for line in path.read_text().splitlines():
        if line.startswith(level):
            heading = line[len(level):].strip()
            out[heading] = ""
        elif heading is not None:
            out[heading] += line + "\n"
    return out


def documented_keys(text: str) -> set[str]:
    """Keys that have their own row in a Markdown table: ``| `key` | ...``."""
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.M))


# ------------------------------------------------------------------ docs/config.md

def test_config_doc_has_a_row_for_every_key_the_loader_knows():
    by_heading = sections(DOCS / "config.md")
    for table, (keys, is_array) in config.TABLES.items():
        heading = f"`[[{table}]]`" if is_array else f"`[{table}]`"
        assert heading in by_heading, f"docs/config.md has no section {heading}"
        missing = [k for k in keys if k not in documented_keys(by_heading[heading])]
        assert not missing, f"docs/config.md {heading} lacks {missing}"


def test_config_doc_has_a_row_for_every_office_hours_key():
    text = sections(DOCS / "config.md")["`[[line]]`"]
    missing = [k for k in config.SCHEDULE_KEYS if k not in documented_keys(text)]
    assert not missing, f"docs/config.md office hours lack {missing}"


def test_config_doc_names_every_driver_plan_and_language():
    text = (DOCS / "config.md").read_text()
    for value in (*config.DRIVERS, *config.LANGUAGES, *config.PROMPT_VOICES, *config.PLAN_NAMES):
        assert f"`{value}`" in text, f"docs/config.md does not name `{value}`"


# ------------------------------------------------------------------ docs/cli.md

def _commands(parser: argparse.ArgumentParser, prefix: str = "linebox"):
    """(``linebox sub [subsub]``, its parser) for every leaf subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _commands(sub, f"{prefix} {name}")


def test_cli_doc_has_a_section_for_every_subcommand_with_all_its_options():
    by_heading = sections(DOCS / "cli.md")
    commands = list(_commands(cli._build_parser()))
    assert len(commands) >= 9
    for name, parser in commands:
        found = [h for h in by_heading if h.startswith(f"`{name} ") or h == f"`{name}`"]
        assert found, f"docs/cli.md has no section for `{name}`"
        heading = found[0]
        options = [o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help"]
        missing = [o for o in options if o not in heading + by_heading[heading]]
        assert not missing, f"docs/cli.md `{name}` does not document {missing}"


def test_cli_doc_shows_the_json_fields_of_messages():
    from linebox.voicemail.cli import FIELDS

    text = sections(DOCS / "cli.md")
    heading = next(h for h in text if h.startswith("`linebox messages"))
    body = text[heading]
    missing = [f for f in FIELDS if f"`{f}`" not in body]
    assert not missing, f"docs/cli.md messages --json lacks {missing}"


# ------------------------------------------------------------------ docs/scenario.md

def _known_keys(data) -> set[str]:
    """The keys the scenario loader accepts at one place, from its own error message."""
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.parse_scenario(data, ROOT)
    m = re.search(r"\(known: ([^)]*)\)", str(e.value))
    assert m, str(e.value)
    return set(m[1].split(", "))


def test_scenario_doc_has_a_row_for_every_scenario_and_call_key():
    text = (DOCS / "scenario.md").read_text()
    rows = documented_keys(text)
    top = _known_keys({"no_such_key": 1})
    call = _known_keys({"call": [{"line": 1, "no_such_key": 1}]})
    assert {"start", "echo_return_loss_db", "line_noise_dbm0", "call"} <= top
    missing = sorted(k for k in top | call if k not in rows)
    assert not missing, f"docs/scenario.md lacks rows for {missing}"


def test_scenario_doc_names_every_caller_key_step_wait_and_hangup():
    text = (DOCS / "scenario.md").read_text()
    caller = _known_keys({"call": [{"line": 1, "caller": {"no_such_key": 1}}]})
    for key in caller:
        assert f"`{key}`" in text, f"docs/scenario.md does not name caller key `{key}`"
    for step in scenario.STEP_KINDS:
        assert f"{{ {step} = " in text, f"docs/scenario.md does not show the step {step!r}"
    for how in scenario.HANGUP_HOW:
        assert f"`{how}`" in text, f"docs/scenario.md does not name hangup {how!r}"
    for until in scenario.WAIT_EVENTS:
        assert f'wait = "{until}"' in text, f"docs/scenario.md does not say what wait {until!r} does"
    assert 'wait = "prompt:NAME"' in text and "wait = { seconds = N }" in text


def test_scenario_doc_lists_every_transcript_event_of_the_catalogue():
    from linebox import events

    catalogue = getattr(events, "CATALOGUE", None)
    if catalogue is None:
        pytest.skip("no event catalogue in linebox.events yet")
    rows = documented_keys((DOCS / "scenario.md").read_text())
    missing = sorted(k.name for k in catalogue.values() if k.transcript and k.name not in rows)
    assert not missing, f"docs/scenario.md lacks transcript events {missing}"
    for kind in catalogue.values():
        if kind.name in rows:
            body = re.search(rf"^\| `{kind.name}` \|([^\n]*)", (DOCS / "scenario.md").read_text(), re.M)[1]
            absent = [f for f in kind.fields if f"`{f}`" not in body]
            assert not absent, f"docs/scenario.md `{kind.name}` lacks fields {absent}"


# ------------------------------------------------------------------ the README

def test_readme_links_the_projects_own_docs_not_an_outside_contract():
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme and "CONTRACT.md" not in readme
    for name in ("README.md", "cli.md", "config.md", "scenario.md"):
        assert f"](docs/{name})" in readme, f"the README does not link docs/{name}"
        assert (DOCS / name).is_file()
