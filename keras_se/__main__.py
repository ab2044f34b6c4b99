"""`python -m keras_se`: the `keras-se` command line."""

import sys

from keras_se.cli import main

if __name__ == "__main__":
    sys.exit(main())
