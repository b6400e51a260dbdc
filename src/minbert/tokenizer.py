"""WordPiece tokenization through the `tokenizers` library, set up the way BERT checkpoints expect."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from tokenizers import Encoding, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.models import WordPiece

from minbert.errors import CheckpointError
from minbert.model_dir import resolve_model_dir

# the files a model directory keeps its tokenizer in (copied into every checkpoint and export)
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json")


def copy_tokenizer_files(source: Path, target: Path) -> list[str]:
    """The tokenizer's files that `source` has, copied into `target`; returns their names."""
    copied = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    for name in copied:
        shutil.copy2(source / name, target / name)
    return copied


ENCODE_CHUNK = 4096  # rows tokenized per call: bounds the library's per-row Encoding objects held at once


class TokenRows(Sequence):
    """Tokenized rows, stored flat: every row's token ids (int32) and token types (int8) end to end, and where each
    row starts. Row i reads as an (ids, types) pair of numpy arrays. A Python list of ints per row costs about 44
    bytes a token (the int objects and the list's pointers, ids and types); this costs 5."""

    def __init__(self, ids: np.ndarray, types: np.ndarray, lengths: np.ndarray):
        self.ids, self.types = ids, types
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= row < len(self):
            raise IndexError(f"row {row} of {len(self)}")
        row %= len(self)
        start, stop = self.starts[row], self.starts[row + 1]
        return self.ids[start:stop], self.types[start:stop]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return (self[row] for row in range(len(self)))


class Tokenizer:
    """`encode(texts, pairs)` -> padded `input_ids`, `attention_mask`, `token_type_ids` tensors."""

    def __init__(self, backend: HFTokenizer, model_max_length: int = 512):
        self.backend = backend
        self.backend.no_truncation()
        self.backend.no_padding()
        self.model_max_length = model_max_length
        self.pad_id = self._special_id("[PAD]")
        self.cls_id = self._special_id("[CLS]")
        self.sep_id = self._special_id("[SEP]")
        self.unk_id: int | None = self.backend.token_to_id("[UNK]")  # stands for a word with no sub-words

    def _special_id(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise CheckpointError(f"the vocabulary has no {token} token")
        return token_id

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> Tokenizer:
        """From the checkpoint's vocab.txt (lower-casing per tokenizer_config.json), else its tokenizer.json."""
        directory = resolve_model_dir(path)
        settings = {}
        if (directory / "tokenizer_config.json").exists():
            settings = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        max_length = min(int(settings.get("model_max_length", 512)), _max_positions(directory))
        vocab = directory / "vocab.txt"
        if vocab.exists():
            return cls(_bert_wordpiece(vocab, lowercase=settings.get("do_lower_case", True),
                                       strip_accents=settings.get("strip_accents")), max_length)
        if (directory / "tokenizer.json").exists():
            return cls(HFTokenizer.from_file(str(directory / "tokenizer.json")), max_length)
        raise CheckpointError(f"{directory}: no vocab.txt or tokenizer.json")

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def tokenize(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode_ids(self, texts: str | Sequence[str], pairs: Sequence[str] | None = None,
                   max_length: int = 512) -> TokenRows:
        """Unpadded (token ids, token type ids) per row. With `pairs`, each row is `[CLS] a [SEP] b [SEP]`
        (token types 0 then 1), truncated longest-first to `max_length` (capped at the model's maximum)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if pairs is not None:
            pairs = [pairs] if isinstance(pairs, str) else list(pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} first sentences but {len(pairs)} second sentences")
        self.backend.enable_truncation(min(max_length, self.model_max_length), strategy="longest_first")
        inputs = texts if pairs is None else list(zip(texts, pairs, strict=True))
        ids, types, lengths = [], [], []
        try:
            for start in range(0, len(inputs), ENCODE_CHUNK):  # a chunk's Encoding objects at a time, not all
                encodings = self.backend.encode_batch(inputs[start:start + ENCODE_CHUNK])
                lengths.append(np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings)))
                ids.append(np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32))
                types.append(np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int8))
        finally:
            self.backend.no_truncation()
        if not inputs:
            return TokenRows(np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int64))
        return TokenRows(np.concatenate(ids), np.concatenate(types), np.concatenate(lengths))

    def words(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        """`text` as words with their character offsets (`text[start:end]` is the word), split as the tokenizer's
        pre-tokenizer splits (BERT's: at whitespace and around each punctuation character), before any
        normalisation: the word list a CoNLL-style tagger takes for raw text."""
        if self.backend.pre_tokenizer is None:
            raise CheckpointError("the tokenizer has no pre-tokenizer to split text into words")
        return self.backend.pre_tokenizer.pre_tokenize_str(text)

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> list[Encoding]:
        """Each sentence of words (already split, as in a CoNLL file) as sub-words, without special tokens or
        truncation: the encodings' `ids` and `word_ids` (the word each sub-word came from; a word may have none,
        e.g. one of invisible characters only)."""
        encodings: list[Encoding] = []
        for start in range(0, len(sentences), ENCODE_CHUNK):
            chunk = [list(words) for words in sentences[start:start + ENCODE_CHUNK]]
            encodings += self.backend.encode_batch(chunk, is_pretokenized=True, add_special_tokens=False)
        return encodings

    def encode_pair_windows(self, firsts: Sequence[str], seconds: Sequence[str], max_length: int,
                            stride: int) -> list[list[Encoding]]:
        """Each pair as `[CLS] first [SEP] part of second [SEP]` windows of at most `max_length` tokens: the second
        text is cut into windows that overlap by `stride` tokens (the library's "only_second" truncation with its
        overflowing encodings), the first is whole in every window. Offsets are characters of each text."""
        if len(firsts) != len(seconds):
            raise ValueError(f"got {len(firsts)} first texts but {len(seconds)} second texts")
        self.backend.enable_truncation(min(max_length, self.model_max_length), stride=stride,
                                       strategy="only_second")
        windows = []
        try:
            for start in range(0, len(firsts), ENCODE_CHUNK):
                pairs = list(zip(firsts[start:start + ENCODE_CHUNK], seconds[start:start + ENCODE_CHUNK],
                                 strict=True))
                windows += [[e, *e.overflowing] for e in self.backend.encode_batch(pairs)]
        finally:
            self.backend.no_truncation()
        return windows

    def pad(self, rows: Sequence[tuple[Sequence[int], Sequence[int] | None]], width: int = 0
            ) -> dict[str, torch.Tensor]:
        """Pad (ids, type ids) rows to the longest, or to `width` if that is wider (a bucket's width): `input_ids`,
        `attention_mask`, `token_type_ids` tensors (type ids None: all 0)."""
        longest = max(width, max((len(ids) for ids, _ in rows), default=0))
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(rows), longest), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, (ids, types) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.as_tensor(ids)
            if types is not None:
                token_type_ids[i, : len(ids)] = torch.as_tensor(types)
            attention_mask[i, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    def encode(self, texts: str | Sequence[str], pairs: Sequence[str] | None = None,
               max_length: int = 512) -> dict[str, torch.Tensor]:
        """Encode a batch (see `encode_ids`), padded to its longest member."""
        return self.pad(self.encode_ids(texts, pairs, max_length))


def _max_positions(directory: Path) -> int:
    try:
        return int(json.loads((directory / "config.json").read_text(encoding="utf-8"))["max_position_embeddings"])
    except (OSError, KeyError, ValueError):
        return 512


def _bert_wordpiece(vocab: Path, lowercase: bool, strip_accents: bool | None) -> HFTokenizer:
    """BERT's pipeline: clean + (lower-case) normalizer, whitespace/punctuation split, WordPiece, [CLS]/[SEP]."""
    tokenizer = HFTokenizer(WordPiece.from_file(str(vocab), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise CheckpointError(f"{vocab}: the vocabulary lacks [CLS] or [SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
    # registered as special so decoding skips them (their ids stay those of vocab.txt)
    tokenizer.add_special_tokens([t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                                  if tokenizer.token_to_id(t) is not None])
    return tokenizer
