import sys

from sodakit.cli import main

sys.exit(main())
