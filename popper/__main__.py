import sys

from popper.cli import main

sys.exit(main())
