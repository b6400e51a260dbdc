from minbert.model.bert import BertModel, BertOutput
from minbert.model.config import BertConfig

__all__ = ["BertConfig", "BertModel", "BertOutput"]
