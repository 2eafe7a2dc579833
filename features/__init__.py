"""County indicators: source readers, code harmonisation, the point-in-time panel and labels."""

import warnings

# PySpark (the ``spark`` extra) warns, in every process and at every pandas entry point, that it
# does not fully support pandas 3; pandera triggers it at import by probing pyspark.pandas. beltcast
# uses Spark SQL only, and its Spark engine is checked against the pandas engine instead.
PYSPARK_PANDAS_3_WARNING = "PySpark does not yet fully support pandas"
warnings.filterwarnings("ignore", message=PYSPARK_PANDAS_3_WARNING, category=FutureWarning)
