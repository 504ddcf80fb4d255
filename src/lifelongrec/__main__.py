"""`python -m lifelongrec ...` (and `torchrun -m lifelongrec ...`): the same command line as `lifelongrec`."""

from .cli import main

if __name__ == "__main__":
    main()
