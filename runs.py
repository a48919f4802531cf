"""Same as the console script minigpt-runs, for a clone run in place: python runs.py --help"""

from minigpt.cli import runs_cli

if __name__ == "__main__":
    runs_cli()
