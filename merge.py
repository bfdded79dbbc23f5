"""Stage 2 of warm-mini: WARM (weight average) and ENS (prediction average) of the reward models,
with the accuracy table (the paper's Fig. 4) and linear mode connectivity (Fig. 3).

Not built yet: this command line is the contract later stages fill in.
"""

import sys

from warm_mini import config


def main(argv=None):
    parser = config.build_parser(__doc__)
    args = parser.parse_args(argv)
    cfg, run_dir = config.resolve(args)
    sys.exit(f"{__file__}: this stage is not implemented yet (run directory would be {run_dir}); see README.md")


if __name__ == "__main__":
    main()
