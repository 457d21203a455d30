import sys

from facecycle.cli import main

sys.exit(main())
