"""Data formats a task's files may be in, each a unit of `DATA_FORMATS` with its own option table
(`format = { name = "conll", scheme = "iob1" }`), a `check(options, where)` that names the config key it cannot
serve, and a `read(path, options, context)` that gives a LoadedFile of its examples and reported bad rows:

- `tsv` (delimited.py): today's delimited files, Example rows, read with the spec's columns (context.file_format)
- `conll` (conll.py): token tagging, TaggedExample per sentence
- `squad` (squad.py): extractive QA, SpanExample per question
- `jsonl`, `json` (records.py), `parquet` (parquet.py), `csv` (csvfile.py): records, each role read from a field
  path (records.py: one set of roles and row checks): sentence rows (Example), tag rows (TaggedExample), span rows
  (SpanExample) or choice rows (ChoiceExample)

Every reader reads regular files only, drops a BOM, takes any line end, reports bytes that are not UTF-8 per row
(a whole-file JSON: one error naming the place), reports each bad row with its line or place and reason and
skips it (strict: the first one is fatal), and never drops or invents a row without a report. Adding a format is
one module here and its registry line.
"""

from minbert.data.formats import conll, csvfile, delimited, parquet, records, squad
from minbert.data.formats.base import (
    DATA_FORMATS,
    Answer,
    CheckedFile,
    ChoiceExample,
    ReadContext,
    SpanExample,
    TaggedExample,
)
from minbert.data.formats.conll import label_set, tag_labels

__all__ = ["DATA_FORMATS", "Answer", "CheckedFile", "ChoiceExample", "ReadContext", "SpanExample", "TaggedExample",
           "conll", "csvfile", "delimited", "label_set", "parquet", "records", "squad", "tag_labels"]
