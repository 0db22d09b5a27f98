"""Flags a command hands on to Beam are checked against Beam's own pipeline options.

A command parses its own flags with ``parse_known_args`` and passes what is left to Beam as
pipeline options. Beam only warns ("Discarding unparseable args") about a flag it does not
know, so a typo such as ``--allow-private-networks`` for ``--allow_private_networks`` would
run the job with the default and exit 0. This module refuses such a flag in one line that
names it and the closest flag the command or Beam knows.
"""

import argparse
import difflib
from typing import Iterable, List, Optional, Sequence

from imat_common.errors import user_error


class _Refusal(Exception):
    """A leftover argument Beam's parser cannot take (an unknown flag or a bad value)."""


def flags_of(parser: argparse.ArgumentParser) -> List[str]:
    """The long flags a parser knows, e.g. ``['--output', '--workdir']``."""
    return sorted(s for s in parser._option_string_actions if s.startswith("--"))


def _beam_parser():
    """An argparse parser of every registered ``PipelineOptions`` subclass's flags, as Beam builds it.

    Beam's ``PipelineOptions.get_all_options`` builds the same parser to read its options; its
    leftovers are what Beam would discard. ``allow_abbrev=False`` as there: Beam takes no abbreviations.
    """
    from apache_beam.options import pipeline_options

    class Parser(pipeline_options._BeamArgumentParser):
        def error(self, message):
            raise _Refusal(message)

        def exit(self, status=0, message=None):
            raise _Refusal(message or f"exit {status}")

    parser = Parser(allow_abbrev=False, add_help=False)
    # Keyed by name as in get_all_options: a class imported twice must not add its flags twice.
    classes = {}
    for cls in pipeline_options.PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def beam_flags() -> List[str]:
    """Every long flag Beam's pipeline options accept."""
    return flags_of(_beam_parser())


def _suggestion(flag: str, known: Sequence[str]) -> str:
    # Compared with hyphens as underscores, so --allow-private-networks finds --allow_private_networks.
    def norm(name: str) -> str:
        return name.lstrip("-").replace("-", "_").lower()

    by_norm = {norm(k): k for k in known}
    close = difflib.get_close_matches(norm(flag), list(by_norm), n=1, cutoff=0.6)
    return f"; did you mean {by_norm[close[0]]}?" if close else ""


def unknown_arg_message(beam_args: Sequence[str], own_flags: Iterable[str] = ()) -> Optional[str]:
    """Why Beam cannot take ``beam_args``, in one line; None when it takes them all.

    Args:
      beam_args: the leftovers of the command's ``parse_known_args``.
      own_flags: the command's own long flags, offered as suggestions alongside Beam's.

    Returns:
      e.g. ``unknown flag --allow-private-networks; did you mean --allow_private_networks?``
    """
    if not beam_args:
        return None
    parser = _beam_parser()
    try:
        _, unknown = parser.parse_known_args(list(beam_args))
    except _Refusal as e:  # a Beam flag with a bad value, e.g. --direct_num_workers=two
        return f"Beam pipeline option: {e}"
    if not unknown:
        return None
    first = unknown[0]
    if not first.startswith("-"):
        return f"unexpected argument {first!r} (every value follows its flag, e.g. --output=PATH)"
    flag = first.split("=", 1)[0]
    known = sorted(set(own_flags) | set(flags_of(parser)))
    hint = _suggestion(flag, known) or " (neither this command's flag nor a Beam pipeline option)"
    return f"unknown flag {flag}{hint}"


def check_beam_args(command: str, beam_args: Sequence[str], own_flags: Iterable[str] = ()) -> None:
    """Refuses leftover arguments that Beam would discard.

    Args:
      command: the ``imat`` command's name, e.g. ``submission``.
      beam_args: the leftovers of the command's ``parse_known_args``.
      own_flags: the command's own long flags (see ``flags_of``), for the suggestion.

    Raises:
      SystemExit: 2, after one line on stderr naming the flag and the closest known one.
    """
    message = unknown_arg_message(beam_args, own_flags)
    if message:
        raise user_error(command, message)
