"""County indicators: source readers, code harmonisation, the point-in-time panel and labels."""

import warnings

# pandera imports pyspark.pandas whenever pyspark is installed (the ``spark`` extra), and PySpark
# warns there, at every import, that it does not fully support pandas 3. beltcast's Spark engine
# uses Spark SQL only, never pyspark.pandas, so the warning says nothing about beltcast.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
