"""One place holds the decoding defaults (autojudge.decoding.defaults); every command that
decodes for a user takes them from there."""

from __future__ import annotations

import pytest

from autojudge.cli.parser import build_parser
from autojudge.decoding import defaults
from autojudge.models.registry import REGISTERED

COMMANDS = {
    "generate": ["generate", "--prompt", "hi"],
    "eval": ["eval", "--out", "run"],
    "serve": ["serve"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_decoding_command_takes_its_defaults_from_one_place(command, monkeypatch):
    # Other values in the one place must show up in every command's parsed defaults: a
    # command with a number of its own would keep it.
    changed = {"WINDOW": 5, "DRAFT_P_MIN": 0.3, "DRAFT_LENGTH": "adaptive", "DRAFTER": "lookup",
               "EVAL_DRAFT_LENGTH": "auto", "EVAL_DRAFTER": "auto", "DRAFT": "some-draft", "TARGET": "some-target"}
    for name, value in changed.items():
        monkeypatch.setattr(defaults, name, value)
    args = build_parser().parse_args(COMMANDS[command])
    assert (args.window, args.draft_p_min) == (5, 0.3)
    if command == "generate":
        assert (args.draft_length, args.drafter) == ("adaptive", "lookup")
    if command == "eval":  # eval's own: one drafter for every mode it compares
        assert (args.draft_length, args.drafter) == ("auto", "auto")
    if command != "demo":  # the demo loads the defaults' pair itself (autojudge.demo)
        assert (args.draft, args.target) == ("some-draft", "some-target")


def test_the_default_pair_is_registered_and_each_default_names_its_measurement():
    assert defaults.DRAFT in REGISTERED and defaults.TARGET in REGISTERED
    source = open(defaults.__file__).read()
    assert source.count("docs/bench/adaptive-q4_0-gsm8k") >= 2
    assert source.count("docs/bench/speed-defaults") >= 1 and source.count("docs/bench/lookup-evidence") >= 1


def test_mining_keeps_the_pair_its_data_was_made_with():
    args = build_parser().parse_args(["mine", "--out", "run"])
    assert (args.draft, args.target) != (defaults.DRAFT, defaults.TARGET)
