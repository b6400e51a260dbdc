"""Extra training signals, each a small named unit chosen per task (`tasks.X.regularizers = ["fgsm", "mnrl"]`),
and gradient surgery across tasks (`train.gradient_surgery = "pcgrad"`).

A regularizer sees the task's clean output and loss and returns an extra term; the batch loss is
loss + sum(weight * term).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from minbert.data.batching import Batch
from minbert.tasks.losses import TaskOutput
from minbert.training.config import TaskConfig


class FGSM:
    """Fast gradient sign adversarial training (Goodfellow et al. 2015) on the input word embeddings: the loss on
    embeddings moved by epsilon * sign(d loss / d embeddings)."""

    needs_word_embeds = True

    def __init__(self, task: TaskConfig):
        self.epsilon = task.fgsm_epsilon

    def __call__(self, model, batch: Batch, output: TaskOutput, loss: Tensor, word_embeds: Tensor) -> Tensor:
        (gradient,) = torch.autograd.grad(loss, word_embeds, retain_graph=True)
        adversarial = word_embeds + self.epsilon * gradient.sign()
        return model.loss(batch, model(batch, word_embeds=adversarial))


class MNRL:
    """Multiple negatives ranking loss: each anchor should be closer (cosine, x scale) to its positive than to the
    batch's other candidates. Sentiment: positives share the anchor's label; siamese pairs: a duplicate's two
    sentences (label 1), with every other second sentence in the batch as a negative."""

    needs_word_embeds = False

    def __init__(self, task: TaskConfig):
        self.scale = task.mnrl_scale

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


def divergence(a: TaskOutput, b: TaskOutput, classification: bool) -> Tensor:
    """Symmetric KL between the predicted distributions (softmax over classes, or Bernoulli for one logit);
    squared error between scores for regression."""
    if not classification:
        return F.mse_loss(a.score.float().view(-1), b.score.float().view(-1))
    x, y = a.logits.float(), b.logits.float()
    if x.dim() == 1 or x.shape[-1] == 1:  # one logit: two classes
        x, y = x.view(-1, 1), y.view(-1, 1)
        x, y = torch.cat([torch.zeros_like(x), x], dim=-1), torch.cat([torch.zeros_like(y), y], dim=-1)
    p, q = F.log_softmax(x, dim=-1), F.log_softmax(y, dim=-1)
    return (F.kl_div(p, q, log_target=True, reduction="batchmean")
            + F.kl_div(q, p, log_target=True, reduction="batchmean"))


class SMART:
    """SMART's smoothness-inducing adversarial regularizer (Jiang et al. 2020): start from small Gaussian noise
    on the word embeddings, take one normalised gradient-ascent step on the divergence between the perturbed and
    the clean predictions, and penalise the divergence there. Its other half, the Bregman proximal point step, is
    `BregmanProximal` (`train.bregman_weight`)."""

    needs_word_embeds = True

    def __init__(self, task: TaskConfig):
        self.noise, self.step, self.weight = task.smart_noise, task.smart_step, task.smart_weight

    def __call__(self, model, batch: Batch, output: TaskOutput, loss: Tensor, word_embeds: Tensor) -> Tensor:
        classification = model.heads[batch.task].kind.is_classification
        clean = TaskOutput(output.logits.detach(), output.score.detach())
        delta = (torch.randn_like(word_embeds) * self.noise).requires_grad_()
        perturbed = model(batch, word_embeds=word_embeds.detach() + delta)
        (gradient,) = torch.autograd.grad(divergence(perturbed, clean, classification), delta)
        direction = gradient / gradient.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        delta = (delta + self.step * direction).detach()
        return divergence(model(batch, word_embeds=word_embeds + delta), output, classification)


class BregmanProximal:
    """SMART's momentum Bregman proximal point (Jiang et al. 2020): a slow copy of the model, theta~ <- beta *
    theta~ + (1 - beta) * theta after every update, whose predictions the model is pulled towards with
    weight * D(f(x; theta), f(x; theta~)) (`divergence`). It keeps each update near where training has been,
    so aggressive steps cannot wander far from the pretrained solution. Unlike the regularizers above it spans
    every task, so it is a train-level option; it restarts from the model at the start of every stage."""

    def __init__(self, model, weight: float, momentum: float):
        self.weight, self.momentum = weight, momentum
        self.teacher = copy.deepcopy(model).requires_grad_(False).eval()  # no dropout: a fixed target

    def __call__(self, batch: Batch, output: TaskOutput) -> Tensor:
        with torch.no_grad():
            target = self.teacher(batch)
        classification = self.teacher.heads[batch.task].kind.is_classification
        return divergence(output, TaskOutput(target.logits.float(), target.score.float()), classification)

    @torch.no_grad()
    def update(self, model) -> None:
        pairs = [(t, p) for t, p in zip(self.teacher.parameters(), model.parameters(), strict=True) if p.requires_grad]
        if pairs:
            torch._foreach_lerp_([t for t, _ in pairs], [p.detach() for _, p in pairs], 1.0 - self.momentum)


REGULARIZERS = {"fgsm": FGSM, "mnrl": MNRL, "smart": SMART}


def build_regularizers(task: TaskConfig) -> list[tuple[float, object]]:
    """(weight, regularizer) pairs for a task's `regularizers` list."""
    built = []
    for key in task.regularizers:
        weight = {"fgsm": 1.0, "mnrl": task.mnrl_weight, "smart": task.smart_weight}[key]
        built.append((weight, REGULARIZERS[key](task)))
    return built


def pcgrad(gradients: list[Tensor], rng: np.random.Generator) -> Tensor:
    """PCGrad (Yu et al. 2020): project each task's gradient off the others it conflicts with (negative dot
    product), visiting the others in random order, then sum. `gradients` are flat vectors, one per task."""
    projected = []
    for i, g in enumerate(gradients):
        g = g.clone()
        for j in rng.permutation(len(gradients)):
            if j == i:
                continue
            other = gradients[j]
            dot = torch.dot(g, other)
            if dot < 0:
                g -= dot / other.dot(other).clamp_min(1e-20) * other
        projected.append(g)
    return torch.stack(projected).sum(dim=0)
