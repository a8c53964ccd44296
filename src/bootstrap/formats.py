"""The start-up check that the domain's output formats and the infrastructure's encoders are the same set."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from application.ports import RowEncoderFactory
from domain.formats import OUTPUT_FORMATS, OutputFormat
from infrastructure.formats import OPTIONAL_ENCODERS, installed_encoders


class OutputFormatMismatch(Exception):
    """The registered output formats and the encoders disagree: a defect of the build, refused at start."""


def encoders_for(
    formats: Sequence[OutputFormat] = OUTPUT_FORMATS,
    encoders: Mapping[str, RowEncoderFactory] | None = None,
    optional: Mapping[str, object] = OPTIONAL_ENCODERS,
) -> dict[str, RowEncoderFactory]:
    """The encoder of each installed format, by name (`encoders`: the installed ones, by default). Raises
    OutputFormatMismatch, with one line naming every offending format, unless each format is registered once and
    has an encoder (or is `optional`, its library not installed), and each encoder has a format."""
    encoders = installed_encoders() if encoders is None else encoders
    names = [f.name for f in formats]
    problems = [
        *(f"{name!r} is registered {count} times" for name, count in Counter(names).items() if count > 1),
        *(f"{name!r} has no encoder" for name in dict.fromkeys(names) if name not in encoders and name not in optional),
        *(f"the encoder {name!r} has no registered format" for name in encoders if name not in names),
    ]
    if problems:
        raise OutputFormatMismatch(f"output formats: {'; '.join(problems)}")
    return {name: encoders[name] for name in names if name in encoders}
