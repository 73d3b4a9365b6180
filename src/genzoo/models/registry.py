"""The model registry: ``register`` (a class decorator), ``register_preset`` (a name for a
registered class with other defaults), ``names()``, ``get()``, ``build(name, **config)``."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing

from ..errors import GenzooError


@dataclasses.dataclass(frozen=True)
class Entry:
    cls: type
    defaults: dict  # option values that replace the Config's own defaults under this name
    summary: str  # one line for `genzoo list`


_REGISTRY: dict[str, Entry] = {}
# models made of two saved folders, by the link file that joins them: {"codes": CodePrior} (models/latent/vqvae.py),
# so that models/folder.py loads them without importing the modules that define them
PAIRS: dict[str, type] = {}


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def register(cls):
    _REGISTRY[cls.name] = Entry(cls, {}, _first_line(cls.__doc__) or cls.__module__)
    return cls


def register_preset(name: str, cls: type, summary: str, **defaults) -> None:
    """Register ``name`` as ``cls`` with other default options (a variant is an option, not a subclass)."""
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(defaults) - valid)
    if unknown:
        raise ValueError(f"preset {name}: {cls.__name__} has no option(s) {', '.join(unknown)}")
    _REGISTRY[name] = Entry(cls, dict(defaults), summary)


def names() -> list[str]:
    return list(_REGISTRY)


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise GenzooError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get(name: str) -> type:
    """The model class registered under ``name``."""
    return _entry(name).cls


def summary(name: str) -> str:
    return _entry(name).summary


def config_fields(name: str) -> list[dataclasses.Field]:
    return list(dataclasses.fields(get(name).Config))


def option_defaults(name: str) -> dict:
    """{option: default} of every config field under ``name`` (a preset's values applied)."""
    entry = _entry(name)
    out = {}
    for f in dataclasses.fields(entry.cls.Config):
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = entry.defaults.get(f.name, default)
    return out


def option_help(name: str) -> dict:
    """{option: what it means} for the config fields under ``name``: the comment on a field's line
    of its Config's source, after the comment lines just above it (the config's comments are its
    documentation, so ``genzoo train MODEL --help`` prints the same words the source has)."""
    return field_help(get(name).Config)


@dataclasses.dataclass(frozen=True)
class RunOption:
    """One run-time option as the command line offers it: declared by one or more registered models."""

    name: str  # the field, and the keyword argument of sample() / eval_figures()
    kind: type  # int, float, bool or str
    help: str  # the first declaring model's comment
    limits: tuple  # (low, high), either None
    low_open: bool  # the low limit itself is refused (a temperature > 0)
    choices: tuple  # the allowed strings, or ()
    models: tuple  # the registered names that declare it


def run_options(kind: str) -> dict[str, RunOption]:
    """Every option of ``kind`` ("SampleOptions" or "EvalOptions") that a registered model declares, by name, in
    the registry's order: the command line's flags for sample, complete, eval --fid (SampleOptions) and eval."""
    found: dict = {}
    for name, entry in _REGISTRY.items():
        options = getattr(entry.cls, kind)
        hints, meaning = typing.get_type_hints(options), field_help(options)
        for f in dataclasses.fields(options):
            if f.name in found:  # a second model's option of the same name: its values and words join the first's
                seen = found[f.name]
                seen["models"].append(name)
                seen["choices"] += tuple(c for c in options.choices.get(f.name, ()) if c not in seen["choices"])
                text = meaning.get(f.name, "")
                if text and text != seen["help"]:
                    seen["help"] += f" | {name}: {text}"
                continue
            kind_ = hints[f.name]
            kind_ = next(a for a in typing.get_args(kind_) if a is not type(None)) if typing.get_args(kind_) else kind_
            found[f.name] = {"name": f.name, "kind": kind_, "help": meaning.get(f.name, ""),
                             "limits": tuple(options.limits.get(f.name, (None, None))),
                             "low_open": f.name in options.exclusive,
                             "choices": tuple(options.choices.get(f.name, ())), "models": [name]}
    return {k: RunOption(**{**v, "models": tuple(v["models"])}) for k, v in found.items()}


def field_help(config: type) -> dict:
    """{field: what it means} of a dataclass: the comment on a field's line of its source, after the comment lines
    just above it (base classes first; a subclass's comment wins). Read once per class: ``inspect.getsource`` parses
    the class's whole module each time, and every command line asks for every model's options (0.7 s a parser)."""
    return dict(_field_help(config))


@functools.lru_cache(maxsize=None)
def _field_help(config: type) -> dict:
    fields = {f.name for f in dataclasses.fields(config)}
    out: dict = {}
    for cls in reversed(config.__mro__):  # a subclass's comment wins
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):  # no source shipped (a frozen install): the options keep their defaults' help
            continue
        above: list = []
        for line in source.splitlines():
            comment = re.match(r"\s+#\s?(.*)$", line)
            if comment:
                above.append(comment.group(1).strip())
                continue
            field = re.match(r"\s+(\w+)\s*:[^=]*=[^#]*(?:#\s?(.*))?$", line)
            if field and field.group(1) in fields:
                text = " ".join(above + ([field.group(2).strip()] if field.group(2) else []))
                if text:
                    out[field.group(1)] = text
            above = []
    return out


def build(name: str, **config):
    """Construct a model from its registry name and its config's keyword arguments.

    Example:
        >>> model = build("nade", image_shape=(1, 2, 2), levels=2, hidden_units=3)
        >>> model.likelihood_kind, model.config.hidden_units
        ('exact', 3)
    """
    entry = _entry(name)
    valid = {f.name for f in dataclasses.fields(entry.cls.Config)}
    unknown = sorted(set(config) - valid)
    if unknown:
        raise GenzooError(f"{name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    try:
        cfg = entry.cls.Config(**{**entry.defaults, **config})
    except TypeError as e:
        raise GenzooError(f"{name}: bad config ({e})") from None
    except GenzooError as e:
        raise GenzooError(f"{name}: {e}") from None
    try:
        model = entry.cls(cfg)
    except (RuntimeError, MemoryError) as e:  # e.g. weights larger than memory: one line, not a traceback
        raise GenzooError(f"{name}: cannot build with these options ({str(e).strip().splitlines()[0][:200]})") from None
    model.name = name  # a preset's models carry its name (config.json records it; genzoo.load rebuilds it)
    return model
