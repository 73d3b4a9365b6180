"""Every command's parser as data, so that ``genzoo COMMAND --help`` prints without importing the command's module
(most import torch and every model: about 2 s of a 2-core machine's start-up for a page of text).

``genzoo/help.json`` (beside ``catalog.json``: a data file that names models stays out of ``cli/``) holds, for each
command, the shape of its parser: its description and epilog, its groups, and each option's flags, destination,
number of values, metavar, choices and help *as shown* (the limits, choices and default that genzoo's HelpFormatter
adds already in the text); and, for ``train``, the group of options each registered model adds. A parser rebuilt
from a shape prints the same help as the real one, character for character; only the values' types are missing,
which help does not read. The parsers are the truth and help.json their copy: ``make catalog`` writes it
(``genzoo.cli.help_shapes``), and tests/test_catalog.py fails when a rebuilt help differs from the real one or the
file is stale.

Only help takes this path: a command line without ``-h``/``--help``, a model the file does not know (one registered
by a plugin), or a missing or unreadable file build the real parser.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

SHAPES_FILE = Path(__file__).parents[1] / "help.json"

# argparse's action classes by the name a shape gives them; an action of another class cannot be shaped
KINDS = {"store": argparse._StoreAction, "store_true": argparse._StoreTrueAction,
         "store_false": argparse._StoreFalseAction, "append": argparse._AppendAction,
         "count": argparse._CountAction, "boolean": argparse.BooleanOptionalAction}
HELP_FLAGS = ("-h", "--help")


def shape(parser: argparse.ArgumentParser) -> dict:
    """The help of ``parser`` as data: {"description", "epilog", "groups": [[title, description], ..],
    "actions": [{"flags", "dest", "kind", "nargs", "metavar", "choices", "required", "help", "group"}, ..]}, groups
    and actions in the parser's order (-h is every parser's own and left out)."""
    formatter, groups = parser._get_formatter(), parser._action_groups
    group_of = {id(a): i for i, g in enumerate(groups) for a in g._group_actions}
    kind_of = {cls: name for name, cls in KINDS.items()}
    actions = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        # an action of genzoo's own that takes values (a renamed flag's note) stores them as far as help can tell
        kind = kind_of.get(type(a)) or ("store" if a.nargs != 0 else None)
        if kind is None:
            raise TypeError(f"{parser.prog}: {'/'.join(a.option_strings) or a.dest}: a {type(a).__name__} has no "
                            f"shape (one of {', '.join(KINDS)})")
        actions.append({"flags": a.option_strings[:1] if kind == "boolean" else a.option_strings, "dest": a.dest,
                        "kind": kind, "nargs": a.nargs, "metavar": a.metavar,
                        "choices": None if a.choices is None else [str(c) for c in a.choices],
                        "required": a.required, "group": group_of[id(a)],
                        "help": None if a.help is None else formatter._get_help_string(a)})
    return {"description": parser.description, "epilog": parser.epilog,
            "groups": [[g.title, g.description] for g in groups], "actions": actions}


def extra(base: dict, full: dict) -> dict:
    """What ``full`` adds after ``base`` (a model's group of options on train's parser): its later groups and
    actions, their group indices as in ``full``."""
    n_groups, n_actions = len(base["groups"]), len(base["actions"])
    if full["groups"][:n_groups] != base["groups"] or full["actions"][:n_actions] != base["actions"]:
        raise ValueError("the parser with a model named does not begin with the parser without one")
    return {"groups": full["groups"][n_groups:], "actions": full["actions"][n_actions:]}


def add_parser(sub, name: str, line: str, command: dict, added: dict | None = None) -> argparse.ArgumentParser:
    """Command ``name``'s parser rebuilt from its shape (and a model's ``added`` groups and options) on the
    subparsers ``sub``; it parses only as far as help needs (no value is checked)."""
    groups, actions = command["groups"] + (added or {}).get("groups", []), \
        command["actions"] + (added or {}).get("actions", [])
    p = sub.add_parser(name, help=line, description=command["description"], epilog=command["epilog"])
    defaults = len(p._action_groups)  # positional arguments, options: every parser's own
    targets = p._action_groups + [p.add_argument_group(title, text) for title, text in groups[defaults:]]
    for a in actions:
        kwargs = {"help": a["help"], "action": KINDS[a["kind"]]}
        if a["kind"] in ("store", "append"):
            kwargs.update(nargs=a["nargs"], metavar=a["metavar"], choices=a["choices"])
        if a["flags"]:
            kwargs.update(dest=a["dest"], required=a["required"])
        targets[a["group"]].add_argument(*(a["flags"] or [a["dest"]]), **kwargs)
    return p


@functools.cache
def load() -> dict | None:
    """help.json, or None where it is missing or unreadable (then help builds the real parsers)."""
    try:
        shapes = json.loads(SHAPES_FILE.read_text())
    except (OSError, ValueError):
        return None
    return shapes if isinstance(shapes, dict) and isinstance(shapes.get("commands"), dict) else None


def asks_help(argv: list) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def no_value_flags(command: dict, added: dict | None = None) -> set:
    """The flags of a shaped parser that take no value (a word after them is not theirs)."""
    actions = command["actions"] + (added or {}).get("actions", [])
    return {f for a in actions if a["nargs"] == 0 for f in a["flags"]} | \
        {"--no-" + a["flags"][0][2:] for a in actions if a["kind"] == "boolean"}
