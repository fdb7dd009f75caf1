import sys

from rnnedge.cli import main

sys.exit(main())
