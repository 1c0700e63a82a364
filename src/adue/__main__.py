import sys

from adue.cli import main

sys.exit(main())
