"""From a saved bundle to where it runs: container images, executor environments, Kubernetes manifests."""
