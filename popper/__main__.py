"""python -m popper: the same program, named "popper" in its messages and in syslog."""
import sys

from popper.cli import main

sys.exit(main(["popper"] + sys.argv[1:]))
