"""Same as the console script minigpt-serve, for a clone run in place: python serve.py --help"""

from minigpt.cli import serve_cli

if __name__ == "__main__":
    serve_cli()
