import sys

from t2m.cli import main

sys.exit(main())
