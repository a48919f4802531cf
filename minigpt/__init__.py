"""minigpt: train small character-level GPT models on a frozen slice of C4."""

__version__ = "0.1.0"
