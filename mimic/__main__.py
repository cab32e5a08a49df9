import sys

from mimic.cli import main

sys.exit(main())
