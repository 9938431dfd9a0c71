"""Run any recsim command as a Spark application, for `spark-submit` or a managed Spark job.

    spark-submit --master yarn --conf spark.executor.memory=8g examples/spark/recsim_job.py \
        abtest --data /shared/recsim-data --arm-column policy --control prod \
        --treatment personal --engine spark --gate gate.toml

The arguments are those of `recsim`. With `--engine spark` recsim joins the
session spark-submit set up (its master and --conf settings), adding only its
own fixed settings (UTC time zone); the exit code is recsim's (docs/cli.md).
"""

from recsim_cli.cli import main

raise SystemExit(main())
