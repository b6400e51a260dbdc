"""minbert: a BERT encoder written from scratch in PyTorch, and a multitask fine-tuning toolkit."""

from minbert.errors import CheckpointError, ConfigError, DataError, MinbertError

__version__ = "0.1.0"

# Everything that needs torch loads when first asked for, so the command line starts fast and `minbert serve` can
# set OpenMP's wait policy before torch reads it.
LAZY = {"BertConfig": "minbert.model", "BertModel": "minbert.model", "BertOutput": "minbert.model",
        "AdamW": "minbert.optim", "Tokenizer": "minbert.tokenizer", "MultitaskBERT": "minbert.predictor",
        "SentenceEncoder": "minbert.sentence_encoder"}


def __getattr__(name: str):
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'minbert' has no attribute {name!r}")


__all__ = [
    "AdamW",
    "BertConfig",
    "BertModel",
    "BertOutput",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MinbertError",
    "MultitaskBERT",
    "SentenceEncoder",
    "Tokenizer",
]
