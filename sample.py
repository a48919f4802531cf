"""Same as the console script minigpt-sample, for a clone run in place: python sample.py --help"""

from minigpt.cli import sample_cli

if __name__ == "__main__":
    sample_cli()
