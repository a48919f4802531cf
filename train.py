"""Same as the console script minigpt-train, for a clone run in place: python train.py --help"""

from minigpt.cli import train_cli

if __name__ == "__main__":
    train_cli()
