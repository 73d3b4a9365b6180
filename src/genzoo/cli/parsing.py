"""genzoo's argparse: a bad command line is one line and exit status 2, and every option's help says its limits and
default. Free of torch, as the top of the command line is (``genzoo --help`` starts without it)."""

from __future__ import annotations

import argparse

from ..errors import GenzooError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help lines that document themselves: each option's help, then its allowed values or
    limits and its default, unless the help already says them."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.help is argparse.SUPPRESS:
            return text
        extra = []
        limits = getattr(action.type, "limits", None)
        if limits and limits not in text:
            extra.append(limits)
        choices = action.choices or getattr(action.type, "choices", None)
        if choices and "one of" not in text:
            extra.append("one of " + ", ".join(map(str, choices)))
        shown = action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action.default, bool)
        if shown and "default" not in text:
            extra.append(f"default {action.default}")
        return "; ".join([text] * bool(text) + extra)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line and exit status 2, with self-documenting help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        where = self.prog.removeprefix("genzoo").strip()
        raise GenzooError(f"{where}: {message}" if where else message)


def named_model(no_value_flags: set, words: list, names: list) -> str | None:
    """The MODEL of ``genzoo train ... MODEL ...``: the first of ``names`` in ``words`` that is not the value of an
    option (an option not in ``no_value_flags``, given without ``=``, takes the word after it)."""
    previous = None
    for word in words:
        takes_it = previous is not None and previous.startswith("-") and "=" not in previous and \
            previous not in no_value_flags
        if word in names and not takes_it:
            return word
        previous = word
    return None
