"""What `vramplan deploy` takes besides the plan: the image, the Kubernetes namespace and model cache,
the address Compose publishes on and the API key's file. Each is checked here, before anything is
rendered, so a bad value is one line and exit 2."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from vramplan.errors import PlanError

# Kubernetes namespaces are DNS-1123 labels: lower case letters, digits and '-', starting and ending
# with a letter or digit, at most 63 characters (kubernetes apimachinery validation IsDNS1123Label).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# An image reference as the OCI distribution spec / docker reference grammar spells it
# (github.com/distribution/reference regexp.go): [registry[:port]/]path[:tag][@digest]. The path is
# lower case components separated by '/'; a tag is at most 128 characters of [A-Za-z0-9_.-] not starting
# with '.' or '-'; a digest is algorithm ':' hex (sha256: 64 hex digits).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# a first component is a registry only with a '.' or a port, or when it is localhost
_DOMAIN = rf"(?:(?:{_LABEL}(?:\.{_LABEL})+|localhost)(?::[0-9]+)?/|{_LABEL}:[0-9]+/)"
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?P<name>{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")

# Where the model cache lives on Kubernetes: one ReadWriteOnce claim (one node), one ReadWriteMany claim
# every pod mounts, or a directory on each node (hostPath).
CACHE_KINDS = ("rwo", "rwx", "host-path")
HOST_CACHE_PATH = "/var/lib/vramplan/hf-cache"


@dataclass(frozen=True)
class DeployOptions:
    image: str | None = None  # --image: replaces the target's pinned image
    namespace: str | None = None  # --namespace (k8s): written into every object
    cache: str | None = None  # --cache (k8s vLLM): rwo, rwx or host-path; None: rwo on one node, rwx across
    publish_address: str = "127.0.0.1"  # --publish-address (Compose): the host address port 8000 binds
    api_key_file: str | None = None  # --api-key-file (Compose): the file vLLM's API key is read from

    def cache_for(self, nodes: int) -> str:
        """The cache kind for a plan of `nodes` nodes."""
        if self.cache is not None:
            return self.cache
        return "rwx" if nodes > 1 else "rwo"


def check_image(image: str) -> str:
    """An image reference with a tag or a digest; raises PlanError otherwise."""
    m = _IMAGE.match(image)
    if m is None:
        raise PlanError(
            f"--image {image!r} is not an image reference: NAME:TAG or NAME@sha256:DIGEST "
            "(e.g. vllm/vllm-openai:v0.33.0)"
        )
    if m.group("tag") is None and m.group("digest") is None:
        raise PlanError(
            f"--image {image!r} names no tag or digest: pin one, e.g. {image}:TAG or {image}@sha256:..."
        )
    digest = m.group("digest")
    if digest is not None and digest.startswith("sha256:") and not _SHA256.match(digest):
        raise PlanError(f"--image {image!r}: a sha256 digest is 64 lower-case hex digits")
    return image


def image_has_digest(image: str) -> bool:
    return "@" in image


def check_namespace(namespace: str) -> str:
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        raise PlanError(
            f"--namespace {namespace!r} is not a Kubernetes namespace name (a DNS-1123 label: at most 63 "
            "lower-case letters, digits and '-', starting and ending with a letter or digit)"
        )
    return namespace


def check_address(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise PlanError(
            f"--publish-address {address!r} is not an IP address (127.0.0.1: this host only; 0.0.0.0: "
            "every interface)"
        ) from None
    return address


def check_options(options: DeployOptions, target: str, nodes: int) -> DeployOptions:
    """`options` checked for `target`: each value well-formed and each option one the target reads."""
    if options.image is not None:
        if target == "ollama":
            raise PlanError("--image goes with --target vllm or k8s (the ollama target runs a local server)")
        check_image(options.image)
    if options.namespace is not None:
        if target != "k8s":
            raise PlanError("--namespace goes with --target k8s")
        check_namespace(options.namespace)
    if options.cache is not None:
        if target != "k8s":
            raise PlanError("--cache goes with --target k8s")
        if options.cache not in CACHE_KINDS:
            raise PlanError(f"--cache {options.cache!r}: one of {', '.join(CACHE_KINDS)}")
        if options.cache == "rwo" and nodes > 1:
            raise PlanError(
                f"--cache rwo: a ReadWriteOnce claim mounts on one node, and this plan runs on {nodes}; "
                "use --cache rwx (a shared claim) or --cache host-path (a copy on each node)"
            )
    check_address(options.publish_address)
    if target != "vllm":
        if options.publish_address != DeployOptions.publish_address:
            raise PlanError("--publish-address goes with --target vllm (Docker Compose)")
        if options.api_key_file is not None:
            raise PlanError("--api-key-file goes with --target vllm (Docker Compose)")
    if options.api_key_file is not None and not options.api_key_file.strip():
        raise PlanError("--api-key-file must not be empty")
    return options
