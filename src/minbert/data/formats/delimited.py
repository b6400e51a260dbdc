"""Today's delimited files (the CS224N files, GLUE's TSVs) as a unit of the registry, so that every task's files
are read through one call, `DATA_FORMATS[name].read(path, options, context)`. Its columns, delimiter, quoting and
labels are the spec's own keys, given as `context.file_format` (DataSpec.file_format())."""

from __future__ import annotations

from pathlib import Path

from minbert.data.files import LoadedFile, read_examples
from minbert.data.formats.base import DATA_FORMATS, ReadContext
from minbert.errors import ConfigError


@DATA_FORMATS.register("tsv")
class DelimitedFormat:
    """Rows of a delimited file with a header: text columns and a label column (minbert.data.files)."""

    @staticmethod
    def read(path: str | Path, options: object, context: ReadContext) -> LoadedFile:
        if context.file_format is None:
            raise ConfigError(f"{context.what or path}: a delimited file is read with the task's columns "
                              "(ReadContext.file_format)")
        return read_examples(path, context.file_format, context.labelled, context.strict, context.what)
