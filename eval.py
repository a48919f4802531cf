"""Same as the console script minigpt-eval, for a clone run in place: python eval.py --help"""

from minigpt.cli import eval_cli

if __name__ == "__main__":
    eval_cli()
