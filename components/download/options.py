"""The download job's command line: flags, their checks, and the settings they make.

Problems a user can fix (a missing input or label map, an output path that is a file) raise
``UserError`` with one line naming the file and what is wrong. The label map itself is read
by ``imat_common.features.load_label_map``, the reader every command shares.
"""

import argparse
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems

from imat_common import beam_flags, spans
from components.download import netguard
from components.download.fetch import DEFAULT_USER_AGENT, FetchSettings
from components.download.images import ImageSettings
from components.download.tfrecord import DEFAULT_GZIP_LEVEL
from components.download.resume import normalise_path


class UserError(ValueError):
    """A flag or an input file the user must fix; the message is one line."""


# The default share of a split's records that must be stored (see --min_stored_fraction's help).
MIN_STORED_FRACTION = 0.5


def _parser(prog: Optional[str], description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--input",
        action="append",
        required=True,
        metavar="SPLIT=PATH",
        help="a split's competition JSON, e.g. train=train.json; repeat per split",
    )
    add("--output", required=True, help="output folder (local or gs://)")
    add(
        "--span",
        metavar="N",
        help="write into <output>/span-N/ (a whole number >= 0): one folder per batch of new data, "
        "the newest of which the pipeline reads. Default: into <output>/ itself",
    )
    add("--label_map", help="label_map.csv; labels it does not list are refused and counted")
    add("--images_per_shard", type=int, default=1000)
    add(
        "--max_size",
        type=int,
        default=ImageSettings.max_size,
        help="longer side of stored images, in pixels (never upscaled)",
    )
    add(
        "--jpeg_quality",
        type=int,
        default=ImageSettings.jpeg_quality,
        help="quality of the JPEGs the job encodes; an RGB JPEG that fits and is no finer is stored as fetched, "
        "less its metadata. Default: %(default)s",
    )
    add("--keep_original", action="store_true", help="store fetched RGB JPEGs unchanged, metadata and all, any size")
    add("--max_pixels", type=int, default=ImageSettings.max_pixels)
    add(
        "--gzip_level",
        type=int,
        default=DEFAULT_GZIP_LEVEL,
        help="zlib level (0-9) of the gzip TFRecord shards: 0 stores the bytes uncompressed inside gzip's "
        "framing, readable as before; higher levels shrink the JPEGs' repeated headers and cost CPU. "
        "Default: %(default)s",
    )
    add(
        "--deadline_s",
        type=float,
        default=FetchSettings.deadline_s,
        help="seconds per image, across all its URLs, attempts and redirects",
    )
    add("--attempt_timeout_s", type=float, default=FetchSettings.attempt_timeout_s)
    add("--max_bytes", type=int, default=FetchSettings.max_bytes)
    add("--max_redirects", type=int, default=FetchSettings.max_redirects)
    add("--retries", type=int, default=FetchSettings.retries)
    add("--backoff_s", type=float, default=FetchSettings.backoff_s)
    add(
        "--concurrency",
        type=int,
        default=FetchSettings.concurrency,
        help="requests in flight per shard being downloaded",
    )
    add("--per_host", type=int, default=FetchSettings.per_host, help="of those, requests in flight to one host")
    add(
        "--max_inflight_bytes",
        type=int,
        default=FetchSettings.max_inflight_bytes,
        help="bytes of response bodies held at once per shard being downloaded, until decoded",
    )
    add("--user_agent", default=DEFAULT_USER_AGENT)
    add("--ignore_opt_out", action="store_true", help="fetch images whose server says X-Robots-Tag: noai or noimageai")
    add(
        "--allow_private_networks",
        action="store_true",
        help="fetch from loopback, private and link-local addresses (the demo, tests, an intranet)",
    )
    add(
        "--allow_network",
        action="append",
        default=[],
        metavar="CIDR",
        help="a network fetched even with the guard on, e.g. 10.1.2.0/24; repeat",
    )
    add(
        "--retry_failed",
        action="store_true",
        help="on a rerun, fetch again the images that ended in timeout, connection_error, or HTTP 429/5xx",
    )
    add("--progress_s", type=float, default=10.0, help="seconds between progress lines")
    add(
        "--min_stored_fraction",
        type=float,
        default=MIN_STORED_FRACTION,
        metavar="F",
        help="fail (exit 3, naming the most common outcome and what to do) when a split stores less than this "
        "share of its records. Dead links cost a few images; losing half or more points to a cause that hits "
        "every image (the address guard, a proxy, an outage, rate limiting), and training on what is left "
        "would go on quietly skewed. 0 turns the check off. Default: %(default)s",
    )
    return parser


def parse_args(
    argv: Optional[List[str]], prog: Optional[str] = None, description: str = "", also_known: Sequence[str] = ()
):
    """Returns (args, split -> input path, Beam's args). Flags this job does not know go to Beam.

    Args:
      argv: the command line's flags.
      prog: the command's name in ``--help``.
      description: the text of ``--help``.
      also_known: flags of a command that wraps this job (``imat demo``), suggested for a typo too.

    Raises:
      UserError: a flag neither this job nor Beam knows (Beam would only warn and drop it),
        naming the closest known flag.
    """
    parser = _parser(prog, description)
    args, beam_args = parser.parse_known_args(argv)
    unknown = beam_flags.unknown_arg_message(beam_args, beam_flags.flags_of(parser) + list(also_known))
    if unknown:
        raise UserError(unknown)
    inputs = {}
    for item in args.input:
        split, sep, path = item.partition("=")
        if not sep or not split or not path:
            parser.error(f"--input takes SPLIT=PATH, got {item!r}")
        if split in inputs:
            parser.error(f"--input names split {split!r} twice")
        inputs[split] = path
    args.span = _span(args.span)
    for name in ("images_per_shard", "concurrency", "per_host", "max_bytes", "max_size", "max_pixels"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not 1 <= args.jpeg_quality <= 100:
        parser.error(f"--jpeg_quality must be between 1 and 100, got {args.jpeg_quality}")
    if not 0 <= args.gzip_level <= 9:
        parser.error(f"--gzip_level must be between 0 and 9, got {args.gzip_level}")
    if not 0.0 <= args.min_stored_fraction <= 1.0:
        parser.error(f"--min_stored_fraction must be between 0 and 1, got {args.min_stored_fraction}")
    if args.max_inflight_bytes < args.max_bytes:
        parser.error(
            f"--max_inflight_bytes ({args.max_inflight_bytes}) must be at least --max_bytes "
            f"({args.max_bytes}), or the largest allowed image could never be held"
        )
    try:
        args.allow_network = [str(n) for n in netguard.parse_networks(args.allow_network)]
    except ValueError as e:
        parser.error(f"--allow_network: {e}")
    return args, inputs, beam_args


# ASCII digits only: int() would also take " 3", "+3", "1_0" and other scripts' digits.
_SPAN = re.compile(r"[0-9]+")


def _span(value: Optional[str]) -> Optional[int]:
    """The ``--span`` value as a number, or None without the flag.

    Raises:
      UserError: not a whole number >= 0. argparse's own type check would print its usage too,
        and the job's errors are one line.
    """
    if value is None:
        return None
    if not _SPAN.fullmatch(value):
        raise UserError(f"--span takes a whole number >= 0 (the span's folder is span-N), got {value!r}")
    return int(value)


def output_dir(output: str, span: Optional[int]) -> str:
    """The folder the job writes into: ``output`` itself, or its ``span-N`` folder with ``--span N``."""
    # No zero padding (span-3): the pipeline's ImportExampleGen pattern span-{SPAN} reads the number back.
    return output if span is None else FileSystems.join(output, spans.folder(span))


def settings_of(args) -> Tuple[FetchSettings, ImageSettings]:
    """The fetch and image settings the flags ask for."""
    image = ImageSettings(
        max_size=args.max_size,
        jpeg_quality=args.jpeg_quality,
        keep_original=args.keep_original,
        max_pixels=args.max_pixels,
    )
    fetch = FetchSettings(
        deadline_s=args.deadline_s,
        attempt_timeout_s=args.attempt_timeout_s,
        max_bytes=args.max_bytes,
        max_redirects=args.max_redirects,
        retries=args.retries,
        backoff_s=args.backoff_s,
        concurrency=args.concurrency,
        per_host=args.per_host,
        max_inflight_bytes=args.max_inflight_bytes,
        user_agent=args.user_agent,
        respect_opt_out=not args.ignore_opt_out,
        allow_private_networks=args.allow_private_networks,
        allowed_networks=tuple(args.allow_network),
    )
    return fetch, image


# Flags that change what is stored, and so must match when resuming. The others (concurrency,
# per-host and memory limits, backoff, User-Agent, progress) change only speed and manners.
STORED_SETTINGS = (
    "images_per_shard",
    "max_size",
    "jpeg_quality",
    "keep_original",
    "max_pixels",
    "deadline_s",
    "attempt_timeout_s",
    "max_bytes",
    "max_redirects",
    "retries",
    "ignore_opt_out",
    "allow_private_networks",
    "allow_network",
)


def stored_settings(args) -> Dict[str, object]:
    """Flag name -> value for every setting that changes what is stored, the label map included."""
    settings = {name: getattr(args, name) for name in STORED_SETTINGS}
    settings["label_map"] = normalise_path(args.label_map) if args.label_map else ""
    return settings


def _check_file(flag: str, path: str) -> None:
    if not FileSystems.exists(path):
        raise UserError(f"{flag}: no such file")
    if "://" not in path and os.path.isdir(path):
        raise UserError(f"{flag}: is a folder, not a file")


def check_paths(inputs: Dict[str, str], label_map: Optional[str], output: str, span: Optional[int] = None) -> None:
    """Raises UserError for an input or label map that is missing, or an output that is a file.

    Args:
      inputs: split -> input path.
      label_map: the label map's path, or None.
      output: the ``--output`` folder.
      span: the ``--span`` number, or None; with a number, ``output/span-N`` must not be a file either.
    """
    for split, path in inputs.items():
        _check_file(f"--input {split}={path}", path)
    if label_map:
        _check_file(f"--label_map {label_map}", label_map)
    if "://" not in output:
        parent = output_dir(output, span)
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent.rstrip("/"))
        if parent and not os.path.isdir(parent):
            flag = f"--output {output}" + ("" if span is None else f" --span {span}")
            raise UserError(f"{flag}: {parent} is a file, not a folder")
