"""recsim's heavy data steps on Apache Spark (``--engine spark``); see docs/scale.md.

Only this package imports pyspark, and only when a command asks for the
Spark engine: ``pip install 'recsim[spark]'`` and a Java runtime are needed
then, never otherwise.
"""

from recsim_cli.spark.session import ENGINES, Engine, SparkConfig, parse_spark_conf, spark_session

__all__ = ["ENGINES", "Engine", "SparkConfig", "parse_spark_conf", "spark_session"]
