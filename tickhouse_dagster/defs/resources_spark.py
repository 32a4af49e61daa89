"""Resources of the Spark engine: an in-process local Spark made on first use and a spark-submit
launcher speaking Dagster Pipes. Both are configured from the settings (master, jar cache),
neither holds a secret: the job reads the catalog password and S3 keys from its own
environment."""

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import (
    ConfigurableResource,
    OpExecutionContext,
    PipesSession,
    PipesTempFileContextInjector,
    PipesTempFileMessageReader,
    open_pipes_session,
)
from pydantic import Field, PrivateAttr

from tickhouse_dagster.defs.resources import from_settings
from tickhouse_dagster.settings import TickhouseSettings
from tickhouse_dagster.spark.job import JOB_FILE
from tickhouse_dagster.spark.session import jar_conf, local_conf, python_conf

# Inside the package: an installed project (the Docker image) has it without a checkout.
INGEST_JOB = JOB_FILE


class LocalSparkResource(ConfigurableResource):
    """A Spark session in the run's own process, created the first time `spark_session` is read:
    runs that do not use Spark pay nothing for it, not even the import. (dagster-pyspark's
    `LazyPySparkResource` creates its session as late, but its module imports `pyspark.sql`,
    0.2–0.3 s added to every run process's load of the code location; decision 0401.)"""

    spark_config: dict[str, str]  # flat Spark options, e.g. spark.master
    _session: Any = PrivateAttr(default=None)

    @property
    def spark_session(self) -> Any:
        if self._session is None:
            from pyspark.sql import SparkSession

            builder = SparkSession.builder
            for key, value in self.spark_config.items():
                builder = builder.config(key, value)
            self._session = builder.getOrCreate()
        return self._session


def _spark_submit_default() -> str:
    """SPARK_HOME's spark-submit when set (a cluster's own distribution), else pyspark's."""
    if os.environ.get("SPARK_HOME"):
        return str(Path(os.environ["SPARK_HOME"]) / "bin" / "spark-submit")
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-submit")


class SparkSubmitResource(ConfigurableResource):
    """Runs a Spark job with `spark-submit` against a cluster master, as a Dagster Pipes process:
    the job's logs and results come back into the run."""

    spark_submit: str | None = None  # default: $SPARK_HOME/bin/spark-submit, else pyspark's
    master: str  # spark://host:7077, k8s://https://…, yarn, local[N]
    deploy_mode: str = "client"
    # Extra --conf settings (executor memory/cores, k8s image, …); never secrets.
    conf: dict[str, str] = Field(default_factory=dict)
    cache: str  # TICKHOUSE_CACHE: where the jars are cached (spark.session.jar_conf)

    def command(
        self,
        script: Path | str,
        *,
        master: str | None = None,
        extra_conf: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> list[str]:
        conf = {
            **jar_conf(Path(self.cache)),
            **python_conf(),
            "spark.driver.memory": "1g",
            **self.conf,
            **(extra_conf or {}),
        }
        command = [
            self.spark_submit or _spark_submit_default(),
            "--master",
            master or self.master,
            "--deploy-mode",
            self.deploy_mode,
        ]
        for key, value in conf.items():
            command += ["--conf", f"{key}={value}"]
        return [*command, str(script), *args]

    def run(
        self,
        context: OpExecutionContext,
        command: Sequence[str],
        extras: Mapping[str, Any],
    ) -> tuple[int, PipesSession]:
        """(exit code, Pipes session): unlike PipesSubprocessClient this keeps the messages of a
        failed job, so its reason can be shown instead of just an exit code."""
        env = {
            **os.environ,
            # The driver runs this interpreter (client mode): the project and pyspark are there.
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        master = command[command.index("--master") + 1] if "--master" in command else ""
        if _on_loopback(master):
            # A cluster on 127.0.0.1 (infra/local/stack up spark): the driver binds there too.
            env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        with open_pipes_session(
            context=context,
            context_injector=PipesTempFileContextInjector(),
            message_reader=PipesTempFileMessageReader(),
            extras=dict(extras),
        ) as session:
            process = subprocess.Popen(
                list(command), env={**env, **session.get_bootstrap_env_vars()}
            )
            code = process.wait()
        return code, session


def _on_loopback(master: str) -> bool:
    return master.startswith("local") or master.startswith(
        ("spark://127.0.0.1:", "spark://localhost:")
    )


def spark_resources(settings: TickhouseSettings) -> dict[str, Any]:
    """`pyspark`: a local Spark created on first use (runs that do not use it pay nothing);
    `spark_submit`: the launcher, its master from TICKHOUSE_SPARK_MASTER."""
    return {
        "pyspark": LocalSparkResource(spark_config=local_conf(settings.cache)),
        "spark_submit": SparkSubmitResource(
            master=from_settings(settings, "TICKHOUSE_SPARK_MASTER"),
            cache=from_settings(settings, "TICKHOUSE_CACHE"),
        ),
    }
