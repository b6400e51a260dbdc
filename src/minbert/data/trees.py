"""The Stanford Sentiment Treebank's PTB-style trees: every node a labelled phrase.

    (3 (2 (2 The) (2 Rock)) (4 (3 (2 is) ...)) (2 .))

One tree per line; nltk's `Tree.fromstring` parses it. Nodes and leaves are separated by ASCII spaces only: a
token may hold a no-break space (`8\u00a01\\/2`) that nltk's default `\\s` patterns would split. A phrase's text is
its leaves joined by single spaces, which spells it exactly like the CS224N `ids-sst-*.csv` sentences (same PTB
escapes: `-LRB-`, `\\/`, ``` `` ```).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

from minbert.data.files import Example, LoadedFile, SkippedRow
from minbert.errors import DataError
from minbert.outputs import check_input_file

log = logging.getLogger("minbert")
TOKEN = r"[^ ()]+"


def parse_tree(line: str, num_classes: int) -> list[tuple[str, int, bool]]:
    """(phrase text, label, is_root) for every node of one tree, root first. Raises ValueError on a malformed
    tree or a label outside 0..num_classes-1."""
    from nltk import Tree  # nltk's package import costs seconds (scipy, sklearn): only where trees are read

    tree = Tree.fromstring(line, node_pattern=TOKEN, leaf_pattern=TOKEN)
    if not isinstance(tree, Tree):
        raise ValueError("not a tree (no brackets)")
    # each node's words gathered once, bottom up (nltk's leaves() on every node walks each subtree again)
    found: list[tuple[str, list[str]]] = []  # (label, words) per node, root first

    def words_of(node: Tree) -> list[str]:
        slot = len(found)
        found.append((node.label(), []))
        words = found[slot][1]
        for child in node:
            words.extend(words_of(child) if isinstance(child, Tree) else [child])
        return words

    words_of(tree)
    nodes = []
    for index, (label, words) in enumerate(found):
        if not label.isdigit() or not 0 <= int(label) < num_classes:
            raise ValueError(f"label {label!r} is not a class in 0..{num_classes - 1}")
        if not words:
            raise ValueError("a node without words")
        nodes.append((" ".join(words), int(label), index == 0))
    return nodes


def read_sst_trees(path: str | Path, num_classes: int = 5, min_tokens: int = 1, include_roots: bool = False,
                   dedup: bool = True, strict: bool = False,
                   skip_roots: frozenset[str] = frozenset(), what: str = "") -> tuple[LoadedFile, list[str]]:
    """Every labelled node of every tree as an example (id `file:line:node`), and the root sentences.

    `min_tokens`: drop phrases shorter than this many tokens. `include_roots`: keep the whole-sentence nodes (they
    are the sentences of the training file, so they would count twice beside it). `dedup`: one example per
    distinct phrase text; a phrase seen with different labels takes the most frequent one, and is dropped (and
    counted) when that is a tie. `skip_roots`: trees whose sentence is one of these give no phrases (sentences
    held out for evaluation must not reach training through their parts). `what`: the config key that named the
    file, for the message when it is not a regular file."""
    path = check_input_file(path, what)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    loaded, roots = LoadedFile(path), []
    labels: dict[str, Counter] = defaultdict(Counter)
    first: dict[str, Example] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            nodes = parse_tree(line, num_classes)
        except ValueError as exc:
            exc = str(exc).strip().splitlines()[0]  # nltk adds a caret diagram on later lines
            if strict:
                raise DataError(f"{path}:{number}: malformed tree ({exc})") from None
            log.warning("%s:%d: skipped tree: %s", path, number, exc)
            loaded.skipped.append(SkippedRow(number, f"malformed tree ({exc})"))
            continue
        roots.append(nodes[0][0])
        if nodes[0][0] in skip_roots:
            continue
        for index, (text, label, is_root) in enumerate(nodes):
            if (is_root and not include_roots) or len(text.split(" ")) < min_tokens:
                continue
            example = Example(f"{path.stem}:{number}:{index}", (text,), label, number)
            if not dedup:
                loaded.examples.append(example)
                continue
            labels[text][label] += 1
            first.setdefault(text, example)
    if dedup:
        conflicts = ties = 0
        for text, counts in labels.items():
            (label, top), *rest = counts.most_common()
            conflicts += bool(rest)
            if rest and rest[0][1] == top:
                ties += 1
                continue
            example = first[text]
            loaded.examples.append(Example(example.id, example.texts, label, example.line))
        log.info("%s: %d distinct phrases; %d seen with different labels (majority label kept), %d of them tied "
                 "(dropped)", path.name, len(labels), conflicts, ties)
    return loaded, roots
