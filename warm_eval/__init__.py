"""warm_eval: measuring what warm_mini trains, beside the method itself.

reward_models.py  pairwise accuracy by split, ENS and WARM tables, linear mode connectivity (merge.py)
policies.py       Best-of-N against the control reward and oracle-judged win rates (rlhf.py)
report.py         CSV, figures and each run's report.md
aggregate.py      results/: every figure over seeds, mean and spread (scripts/aggregate.py)
"""
