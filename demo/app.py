"""The bortzoo demo as a script (and a Hugging Face Space's entry point): `python demo/app.py [options]`.

The page itself lives in the package (`bortzoo.demo.app`) so that `bortzoo demo` works from any install;
this file only starts it. Options are those of `bortzoo demo --help`.
"""

from bortzoo.demo.app import main

if __name__ == "__main__":
    main()
