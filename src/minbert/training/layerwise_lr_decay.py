"""Layer-wise learning-rate decay (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification"; cited by
report 004): the top encoder layer learns at the stage's rate, each layer below at `decay` times the rate of the
one above, the embeddings below the bottom layer at decay ** layers. Lower layers hold more general features, so
they should move less. The heads keep their own rate.

    [train.techniques.layerwise_lr_decay]
    decay = 0.9
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from minbert.options import option
from minbert.training.hooks import Hook, TrainerView


class LayerwiseLRDecay(Hook):
    @dataclass
    class Options:
        decay: float = option(0.9, low=0, high=1, low_open=True)  # 1: every layer at the same rate

    def __init__(self, options: Options):
        self.decay = options.decay

    def encoder_parts(self, trainer: TrainerView) -> list[tuple[nn.Module, float]]:
        encoder = trainer.model.encoder
        depth = len(encoder.layers)
        parts = [(encoder.embeddings, self.decay**depth)]
        parts += [(layer, self.decay ** (depth - 1 - i)) for i, layer in enumerate(encoder.layers)]
        covered = {id(p) for module, _ in parts for p in module.parameters()}
        rest = [p for p in encoder.parameters() if id(p) not in covered]  # the pooler, above the top layer
        if rest:
            parts.append((nn.ParameterList(rest), 1.0))
        return parts
