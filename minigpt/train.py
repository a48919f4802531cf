"""`python -m minigpt.train` and `torchrun --nproc_per_node=K -m minigpt.train`: the minigpt-train command."""

from .cli import train_cli

if __name__ == "__main__":
    train_cli()
