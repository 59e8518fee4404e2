"""One Spark session for the commands that run on Spark (`score --engine spark`,
`monitoring.engine: spark`).

PySpark is an extra (`pip install 'modelloop[spark]'`); without it a command that asks for Spark
says how to install it rather than failing on an import. The Python workers Spark starts run
this very interpreter (`PYSPARK_PYTHON`), so they import the same modelloop, MLflow and model
libraries as the driver. A local master binds to 127.0.0.1 and starts no web UI.

Reading from S3 on a cluster needs the `hadoop-aws` connector's jars, which Spark fetches from
Maven (`spark.jars.packages`); `MODELLOOP_SPARK_CONF` passes such settings through (see the
README). Here Spark reads local paths only.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from typing import TYPE_CHECKING, Any

from modelloop.errors import ModelloopError, UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The master when neither `--master` nor $MODELLOOP_SPARK_MASTER names one.
DEFAULT_MASTER = "local[*]"
#: Extra Spark settings, `key=value` separated by commas or newlines.
CONF_VARIABLE = "MODELLOOP_SPARK_CONF"
MASTER_VARIABLE = "MODELLOOP_SPARK_MASTER"

#: What PySpark warns on import under pandas 3 (a message pattern for `warnings.filterwarnings`);
#: modelloop hands Spark Arrow data and never uses pandas through PySpark's pandas API.
PYSPARK_PANDAS_WARNING = "PySpark does not yet fully support pandas"

_lock = threading.Lock()


def master_of(master: str | None) -> str:
    """The master to use: the one given, else $MODELLOOP_SPARK_MASTER, else `local[*]`."""
    return master or os.environ.get(MASTER_VARIABLE) or DEFAULT_MASTER


def extra_conf(text: str | None = None) -> dict[str, str]:
    """`key=value` pairs from $MODELLOOP_SPARK_CONF (or `text`); a pair without `=` is refused."""
    raw = os.environ.get(CONF_VARIABLE, "") if text is None else text
    conf: dict[str, str] = {}
    for item in raw.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"${CONF_VARIABLE}: {item!r} is not key=value")
        conf[key.strip()] = value.strip()
    return conf


def session(master: str | None = None, *, app: str = "modelloop") -> SparkSession:
    """The process's Spark session, started on first use with `master` (see `master_of`).

    A session already running with another master is refused rather than silently reused.
    """
    # Process-wide, and only this one message: PySpark repeats it on every conversion.
    warnings.filterwarnings("ignore", PYSPARK_PANDAS_WARNING, FutureWarning)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError(
            "the Spark engine needs PySpark: pip install 'modelloop[spark]' (and Java 17 or newer)"
        ) from None
    wanted = master_of(master)
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            running = active.sparkContext.master
            if running != wanted:
                raise UsageError(
                    f"a Spark session with master {running} is already running; asked for {wanted}"
                )
            return active
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder: Any = SparkSession.builder.master(wanted).appName(app)
        settings = {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            # Not a `spark-warehouse/` folder in the user's working folder (temporary views and
            # cached tables make Spark create one).
            "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "modelloop-spark-warehouse"),
        }
        if wanted.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            settings["spark.driver.host"] = "127.0.0.1"
            settings["spark.driver.bindAddress"] = "127.0.0.1"
        settings.update(extra_conf())
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            spark: SparkSession = builder.getOrCreate()
        except Exception as exc:  # the JVM did not start: no Java, a bad master, a bad setting
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelloopError(f"cannot start Spark (master {wanted}): {reason}") from exc
        spark.sparkContext.setLogLevel("ERROR")
        return spark


def stop() -> None:
    """Stop the process's Spark session, if one runs."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
