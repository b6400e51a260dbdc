"""Task pieces: pooling -> head -> loss (+ regularizers), each chosen by name, and the multitask model that wires
them."""
