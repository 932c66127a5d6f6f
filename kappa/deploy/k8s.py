"""``kappa k8s``: Kubernetes manifests for a bundle's container image (see ``kappa containerize``).

* serving: a Deployment running ``kappa serve`` (readiness on ``/readyz``, liveness on ``/livez``,
  a grace period that covers the drain), a Service, a HorizontalPodAutoscaler and a
  PodDisruptionBudget;
* batch: a Job and a CronJob running ``kappa run``;
* Spark: a ``SparkApplication`` for the Spark operator, running the Spark job in the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kappa.bundle.manifest import Manifest
from kappa.deploy.image import BUNDLE_DIR, DRAIN_SECONDS, SERVE_PORT, SPARK_JOB
from kappa.errors import InputError

UID = 10001  # the image's user (kappa.deploy.image)


@dataclass(frozen=True)
class K8sOptions:
    image: str
    replicas: int = 2
    max_replicas: int = 8
    namespace: str | None = None
    cpu: str = "1"
    memory: str = "1Gi"
    api: str | None = None
    input: str = "/data/input"
    output: str = "/data/output"
    schedule: str = "0 2 * * *"
    executors: int = 2
    spark_version: str = "4.1.0"


def resource_name(service_name: str) -> str:
    """A DNS-1123 name for Kubernetes objects: lower case, digits and '-', at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", service_name.lower()).strip("-")[:50].strip("-")
    if not name:
        raise InputError(f"cannot make a Kubernetes name from {service_name!r}")
    return name


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:63]
    return value.strip("_.-") or "unknown"


def manifests(manifest: Manifest, options: K8sOptions) -> dict[str, list[dict[str, Any]]]:
    """File name -> the objects it holds."""
    if options.replicas < 1 or options.max_replicas < options.replicas:
        raise InputError("--replicas must be at least 1 and at most --max-replicas")
    api = options.api or manifest.apis[0].name
    if api not in {a.name for a in manifest.apis}:
        raise InputError(
            f"bundle {manifest.tag} has no API {api!r}; choose one of {[a.name for a in manifest.apis]}"
        )
    name = resource_name(manifest.name)
    ctx = _Context(manifest, options, name, api)
    return {
        "serve.yaml": [ctx.deployment(), ctx.service(), ctx.autoscaler(), ctx.disruption_budget()],
        "batch-job.yaml": [ctx.job()],
        "batch-cronjob.yaml": [ctx.cron_job()],
        "spark-application.yaml": [ctx.spark_application()],
    }


@dataclass(frozen=True)
class _Context:
    manifest: Manifest
    options: K8sOptions
    name: str
    api: str

    def metadata(self, name: str, component: str) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "labels": {
                **self.selector(component),
                "app.kubernetes.io/version": _label_value(self.manifest.version),
            },
            "annotations": {"kappa.dev/bundle": self.manifest.tag, "kappa.dev/digest": self.manifest.digest},
        }
        if self.options.namespace:
            meta["namespace"] = self.options.namespace
        return meta

    def selector(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "kappa",
        }

    def container(self, args: list[str] | None) -> dict[str, Any]:
        resources = {"cpu": self.options.cpu, "memory": self.options.memory}
        container: dict[str, Any] = {
            "name": "kappa",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "resources": {"requests": resources, "limits": {"memory": self.options.memory}},
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
        if args is not None:
            container["args"] = args
        return container

    def batch_args(self) -> list[str]:
        return [
            "kappa", "run", BUNDLE_DIR, self.api,
            "--input-file", self.options.input, "--output-file", self.options.output, "--resume",
        ]  # fmt: skip

    def pod(self, component: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        return {
            "metadata": {"labels": self.selector(component)},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": UID},
                "containers": containers,
                **spec,
            },
        }

    def deployment(self) -> dict[str, Any]:
        serve = self.container(None)  # the image's default command: kappa serve
        serve["ports"] = [{"name": "http", "containerPort": SERVE_PORT}]
        probe = {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5}
        serve["startupProbe"] = {**probe, "periodSeconds": 2, "failureThreshold": 90}  # model loads first
        serve["livenessProbe"] = {**probe, "failureThreshold": 3}
        serve["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 1,  # /readyz turns false at SIGTERM: leave the Service at once
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(self.name, "serve"),
            "spec": {
                "replicas": self.options.replicas,
                "selector": {"matchLabels": self.selector("serve")},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                # requests in flight finish within the drain; a little more before SIGKILL
                "template": self.pod("serve", [serve], terminationGracePeriodSeconds=DRAIN_SECONDS + 10),
            },
        }

    def service(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(self.name, "serve"),
            "spec": {
                "type": "ClusterIP",
                "selector": self.selector("serve"),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }

    def autoscaler(self) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": self.metadata(self.name, "serve"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "minReplicas": self.options.replicas,
                "maxReplicas": self.options.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        }

    def disruption_budget(self) -> dict[str, Any]:
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.metadata(self.name, "serve"),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": self.selector("serve")}},
        }

    def job_spec(self) -> dict[str, Any]:
        return {
            "backoffLimit": 2,  # a retry resumes: finished shards are kept (--resume)
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": self.pod("batch", [self.container(self.batch_args())], restartPolicy="Never"),
        }

    def job(self) -> dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(f"{self.name}-score", "batch"),
            "spec": self.job_spec(),
        }

    def cron_job(self) -> dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": self.metadata(f"{self.name}-score", "batch"),
            "spec": {
                "schedule": self.options.schedule,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": self.job_spec()},
            },
        }

    def spark_application(self) -> dict[str, Any]:
        metadata = self.metadata(f"{self.name}-spark", "spark")
        labels = self.selector("spark")
        return {
            "apiVersion": "sparkoperator.k8s.io/v1beta2",
            "kind": "SparkApplication",
            "metadata": metadata,
            "spec": {
                "type": "Python",
                "pythonVersion": "3",
                "mode": "cluster",
                "image": self.options.image,  # built with KAPPA_EXTRAS=spark on a base with Java
                "imagePullPolicy": "IfNotPresent",
                "mainApplicationFile": f"local://{SPARK_JOB}",
                "arguments": [
                    "--bundle",
                    BUNDLE_DIR,
                    "--api",
                    self.api,
                    "--input",
                    self.options.input,
                    "--output",
                    self.options.output,
                ],  # fmt: skip
                "sparkVersion": self.options.spark_version,
                "restartPolicy": {"type": "OnFailure", "onFailureRetries": 2, "onFailureRetryInterval": 60},
                "driver": {
                    "cores": 1,
                    "memory": "1g",
                    "labels": dict(labels),
                    "serviceAccount": "spark",
                    "securityContext": {"runAsUser": UID, "runAsNonRoot": True},
                },
                "executor": {
                    "cores": 1,
                    "instances": self.options.executors,
                    "memory": "2g",
                    "labels": dict(labels),
                    "securityContext": {"runAsUser": UID, "runAsNonRoot": True},
                },
            },
        }


def render(objects: list[dict[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
