"""``python -m dlrun`` works like the ``dlrun`` command."""

from dlrun.cli import main

if __name__ == "__main__":
    main()
