"""Same as the console script minigpt-export, for a clone run in place: python export.py --help"""

from minigpt.cli import export_cli

if __name__ == "__main__":
    export_cli()
