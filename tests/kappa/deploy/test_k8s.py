"""`kappa k8s`: manifests that validate against Kubernetes' schemas (kubernetes-validate) and the
Spark operator's published SparkApplication CRD schema (a test fixture)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from kappa.cli.main import cli
from kappa.deploy.image import DRAIN_SECONDS, SPARK_JOB

K8S_VERSION = "1.30.0"
CRD = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "sparkapplication-v1beta2.schema.json").read_text()
)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def validate(obj: dict) -> None:
    if obj["kind"] == "SparkApplication":
        assert obj["apiVersion"] == f"{CRD['group']}/{CRD['version']}"
        jsonschema.Draft7Validator(CRD["openAPIV3Schema"]).validate(obj)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture
def written(iris_service, tmp_path):
    bundle = iris_service.save_to_dir(str(tmp_path / "b"))
    out = tmp_path / "k8s"
    result = invoke(
        "k8s", bundle, "--image", "registry.example.com/iris:1", "--replicas", "3", "--namespace", "ml",
        "--input-file", "s3://bucket/in/", "--output-file", "s3://bucket/out/", "-d", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted(out.iterdir())}
    return bundle, files


def test_every_manifest_validates(written):
    _, files = written
    assert set(files) == {"serve.yaml", "batch-job.yaml", "batch-cronjob.yaml", "spark-application.yaml"}
    kinds = [o["kind"] for objects in files.values() for o in objects]
    assert sorted(kinds) == sorted(
        ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "CronJob",
         "SparkApplication"]
    )  # fmt: skip
    for objects in files.values():
        for obj in objects:
            validate(obj)
            assert obj["metadata"]["namespace"] == "ml"


def test_the_validators_catch_a_broken_manifest(written):
    _, files = written
    deployment = copy.deepcopy(files["serve.yaml"][0])
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    spark = copy.deepcopy(files["spark-application.yaml"][0])
    spark["spec"]["mode"] = "everywhere"
    with pytest.raises(jsonschema.ValidationError):
        validate(spark)


def test_serving_probes_drain_and_resources(written):
    _, files = written
    deployment, service, autoscaler, budget = files["serve.yaml"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 3 and autoscaler["spec"]["minReplicas"] == 3
    assert "args" not in container and "command" not in container  # the image's `kappa serve`
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS  # the drain finishes before SIGKILL
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_batch_and_spark_run_the_bundle_in_the_image(written):
    bundle, files = written
    import kappa

    manifest = kappa.load(bundle).manifest
    (job,) = files["batch-job.yaml"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "kappa", "run", "/bundle", "predict", "--input-file", "s3://bucket/in/",
        "--output-file", "s3://bucket/out/", "--resume",
    ]  # fmt: skip
    assert job["metadata"]["annotations"]["kappa.dev/digest"] == manifest.digest
    (cron,) = files["batch-cronjob.yaml"]
    assert (
        cron["spec"]["jobTemplate"]["spec"] == job["spec"] and cron["spec"]["concurrencyPolicy"] == "Forbid"
    )
    (spark,) = files["spark-application.yaml"]
    assert spark["spec"]["mainApplicationFile"] == f"local://{SPARK_JOB}"
    assert spark["spec"]["arguments"][:4] == ["--bundle", "/bundle", "--api", "predict"]


def test_stdout_bad_bundles_and_bad_apis(iris_service, tmp_path):
    bundle = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    shown = invoke("k8s", str(bundle), "--image", "x:1")
    assert shown.exit_code == 0
    assert len([d for d in yaml.safe_load_all(shown.stdout) if d]) == 7
    assert invoke("k8s", str(bundle), "--image", "x:1", "--api", "nope").exit_code == 2
    (bundle / "src").chmod(0o755)
    source = next((bundle / "src").rglob("*.py"))
    source.chmod(0o644)
    source.write_text(source.read_text() + "\n# changed\n")
    refused = invoke("k8s", str(bundle), "--image", "x:1")
    assert refused.exit_code == 2 and "modified after it was saved" in refused.stderr
