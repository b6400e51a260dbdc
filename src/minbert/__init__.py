"""minbert: a BERT encoder written from scratch in PyTorch, and a multitask fine-tuning toolkit."""

from minbert.errors import CheckpointError, ConfigError, DataError, MinbertError
from minbert.model import BertConfig, BertModel, BertOutput
from minbert.optim import AdamW
from minbert.tokenizer import Tokenizer

__version__ = "0.1.0"


def __getattr__(name: str):
    # The training stack (rich, matplotlib, tensorboard) loads only when asked for.
    if name == "MultitaskBERT":
        from minbert.predictor import MultitaskBERT

        return MultitaskBERT
    if name == "SentenceEncoder":
        from minbert.sentence_encoder import SentenceEncoder

        return SentenceEncoder
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
