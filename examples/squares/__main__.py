"""Entry point of the demo (placeholder until the demo lands)."""

import sys


def main() -> None:
    """Run the demo."""
    sys.stderr.write("The netplay demo is not there yet.\n")


if __name__ == "__main__":
    main()
