"""Stage 3 of warm-mini: Best-of-N and PPO against a single RM, ENS and WARM, win rates, report.md.

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
