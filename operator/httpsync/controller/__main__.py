"""``python -m httpsync.controller`` runs the operator, like ``httpsync run``."""

import argparse
import sys

from httpsync.controller.run import add_arguments, main

parser = argparse.ArgumentParser(prog="httpsync run")
add_arguments(parser)
sys.exit(main(parser.parse_args()))
