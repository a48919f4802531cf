"""Same as the console script minigpt-plot, for a clone run in place: python plot.py --help"""

from minigpt.cli import plot_cli

if __name__ == "__main__":
    plot_cli()
