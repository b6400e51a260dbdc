"""Task pieces: pooling -> head -> loss, each chosen by name, and the multitask model that wires them."""


def registry_names() -> dict[str, list[str]]:
    """Every name a config may use, per kind of unit (for validation and error messages)."""
    from minbert.tasks.heads import HEADS
    from minbert.tasks.kinds import KINDS
    from minbert.tasks.losses import LOSSES
    from minbert.tasks.pooling import POOLINGS
    from minbert.training.samplers import SAMPLERS

    return {"pooling": sorted(POOLINGS), "head": sorted(HEADS), "loss": sorted(LOSSES), "data": sorted(KINDS),
            "sampler": sorted(SAMPLERS)}
