"""Same as the console script minigpt-prepare, for a clone run in place: python prepare.py --help"""

from minigpt.cli import prepare_cli

if __name__ == "__main__":
    prepare_cli()
