import sys

from aragog.cli import main

sys.exit(main())
