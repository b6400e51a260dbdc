"""Extra training signals, each a small named unit chosen per task with its own options table:

    [tasks.sst.regularizers.fgsm]
    epsilon = 1e-5
    [tasks.sst.regularizers.mnrl]
    weight = 0.5

A regularizer sees the task's clean output and loss and returns an extra term; the batch loss is
loss + sum(weight * term), in the order the tables are given. Each declares what it needs (`check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from minbert.data.batching import Batch
from minbert.errors import ConfigError
from minbert.options import Registry, option
from minbert.tasks.losses import TaskOutput


def _perturbs_embeddings(name: str, context: Any) -> None:
    """Perturbations of the word embeddings never reach frozen (cached) layers' outputs again."""
    if context.model.freezes_layers():
        raise ConfigError(f"{context.where}.{name} perturbs the word embeddings, which frozen (cached) layers never "
                          "see again: use it without frozen layers")


class FGSM:
    """Fast gradient sign adversarial training (Goodfellow et al. 2015) on the input word embeddings: the loss on
    embeddings moved by epsilon * sign(d loss / d embeddings)."""

    needs_word_embeds = True

    @dataclass
    class Options:
        epsilon: float = option(1e-5, low=0)  # the step on the word embeddings
        weight: float = option(1.0, low=0)

    def __init__(self, options: Options):
        self.epsilon = options.epsilon

    @classmethod
    def check(cls, options: Options, context: Any) -> None:
        _perturbs_embeddings("fgsm", context)

    def __call__(self, model, batch: Batch, output: TaskOutput, loss: Tensor, word_embeds: Tensor) -> Tensor:
        (gradient,) = torch.autograd.grad(loss, word_embeds, retain_graph=True)
        adversarial = word_embeds + self.epsilon * gradient.sign()
        return model.loss(batch, model(batch, word_embeds=adversarial))


class MNRL:
    """Multiple negatives ranking loss: each anchor should be closer (cosine, x scale) to its positive than to the
    batch's other candidates. Sentiment: positives share the anchor's label; siamese pairs: a duplicate's two
    sentences (label 1), with every other second sentence in the batch as a negative."""

    needs_word_embeds = False
    needs = frozenset({"example vectors"})  # of the task's kind (minbert.tasks.kinds.base.NEEDS)

    @dataclass
    class Options:
        weight: float = option(0.5, low=0)
        scale: float = option(20.0, low=0)  # cosine similarities are multiplied by this before the softmax

    def __init__(self, options: Options):
        self.scale = options.scale

    @classmethod
    def check(cls, options: Options, context: Any) -> None:
        if context.is_pair and not context.siamese:
            raise ConfigError(f"{context.where}.mnrl compares sentence vectors: it needs pair_encoding = 'siamese'")

    def __call__(self, model, batch: Batch, output: TaskOutput, loss: Tensor, word_embeds: Tensor | None) -> Tensor:
        labels = batch.labels
        if len(output.embeddings) == 2:  # pairs: anchors u_i with label 1, candidates every v in the batch
            u, v = (F.normalize(e.float(), dim=-1) for e in output.embeddings)
            anchors = torch.nonzero(labels > 0.5).view(-1)
            if not len(anchors):
                return loss.new_zeros(())
            scores = self.scale * u[anchors] @ v.T  # (A, B)
            return F.cross_entropy(scores, anchors)
        (u,) = output.embeddings
        u = F.normalize(u.float(), dim=-1)
        same = (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool, device=u.device)
        anchors = torch.nonzero(same.any(dim=1)).view(-1)
        if not len(anchors):
            return loss.new_zeros(())
        # one positive per anchor, drawn among the batch's examples with its label (torch's RNG: checkpointed)
        weights = same[anchors].float()
        positives = torch.multinomial(weights.cpu(), 1).view(-1).to(u.device)
        scores = self.scale * u[anchors] @ u.T  # (A, B)
        scores[torch.arange(len(anchors)), anchors] = float("-inf")  # an anchor is not its own candidate
        return F.cross_entropy(scores, positives)


class SMART:
    """SMART's smoothness-inducing adversarial regularizer (Jiang et al. 2020): start from small Gaussian noise
    on the word embeddings, take one normalised gradient-ascent step on the divergence between the perturbed and
    the clean predictions, and penalise the divergence there. Its other half, the Bregman proximal point step, is
    the `bregman` training technique (`[train.techniques.bregman]`)."""

    needs_word_embeds = True

    @dataclass
    class Options:
        weight: float = option(1.0, low=0)  # of the smoothness term
        noise: float = option(1e-5, low=0)  # standard deviation of the initial perturbation
        step: float = option(1e-3, low=0)  # size of the ascent step (on the max-normalised gradient)

    def __init__(self, options: Options):
        self.noise, self.step = options.noise, options.step

    @classmethod
    def check(cls, options: Options, context: Any) -> None:
        _perturbs_embeddings("smart", context)

    def __call__(self, model, batch: Batch, output: TaskOutput, loss: Tensor, word_embeds: Tensor) -> Tensor:
        divergence = model.heads[batch.task].kind.divergence  # between the kind's predicted distributions
        clean = TaskOutput(output.logits.detach(), output.score.detach())
        delta = (torch.randn_like(word_embeds) * self.noise).requires_grad_()
        perturbed = model(batch, word_embeds=word_embeds.detach() + delta)
        (gradient,) = torch.autograd.grad(divergence(perturbed, clean), delta)
        direction = gradient / gradient.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        delta = (delta + self.step * direction).detach()
        return divergence(model(batch, word_embeds=word_embeds + delta), output)


REGULARIZERS = Registry("regularizer", {"fgsm": FGSM, "mnrl": MNRL, "smart": SMART})


def build_regularizers(chosen: dict[str, Any]) -> list[tuple[float, object]]:
    """(weight, regularizer) pairs for a task's `regularizers` tables, in their order."""
    return [(options.weight, REGULARIZERS[name](options)) for name, options in chosen.items()]
