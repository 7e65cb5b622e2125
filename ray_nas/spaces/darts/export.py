"""`ray-nas export` for the DARTS space: selected genotypes as DARTS's own `genotypes.py`
(quark0/darts cnn/genotypes.py: `Genotype = namedtuple(...)`, then one `NAME = Genotype(...)`
per genotype), to import or paste into DARTS's training code. Pure text."""

from __future__ import annotations

from collections.abc import Sequence

HEADER = [
    "from collections import namedtuple",
    "",
    "Genotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')",
    "",
]


def genotypes_file(job: str, entries: Sequence[tuple[str, str, str]]) -> str:
    """The file's text: a comment naming `job`, the namedtuple, then per entry (name, genotype
    text `Genotype(...)`, comment) the line `name = Genotype(...)  # comment`."""
    lines = [f"# Selected genotypes of job {job!r} (ray-nas export); DARTS cnn/genotypes.py format",
             *HEADER]  # fmt: skip
    lines += [f"{name} = {text}  # {comment}" for name, text, comment in entries]
    return "\n".join(lines) + "\n"
