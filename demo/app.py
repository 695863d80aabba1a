"""The bortzoo demo as a script (and a Hugging Face Space's entry point): `python demo/app.py [options]`.

The page itself lives in the package (`bortzoo.demo.app`) so that `bortzoo demo` works from any install;
this file only starts it. Options are those of `bortzoo demo --help`.
"""

import sys

from bortzoo.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
