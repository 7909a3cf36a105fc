import pytest

from components import naming
from components.catalog import CatalogError
from components.endpoints import DatabaseEndpoint
from components.images import ImageError, is_digest_pinned, registry_of, validate_pinned_image

DIGEST = "@sha256:" + "0" * 64


def test_namespace_and_database_names():
    assert naming.namespace_name("acme-corp", "prod") == "tenant-acme-corp-prod"
    assert naming.database_identifier("acme-corp", "prod") == "tenant_acme_corp_prod"
    with pytest.raises(CatalogError):
        naming.namespace_name("acme", "Prod")


def test_tenant_namespace_names_are_recognised_by_prefix_alone():
    assert naming.is_tenant_namespace_name(naming.namespace_name("acme-corp", "prod"))
    assert naming.is_tenant_namespace_name("tenant-not-a-valid-env-NAME")
    for other in ("kube-system", naming.PLATFORM_NAMESPACE, "my-tenant-x", "tenant", None):
        assert not naming.is_tenant_namespace_name(other), other


def test_pod_security_labels_cover_three_modes():
    labels = naming.pod_security_labels()
    assert len(labels) == 6
    assert set(labels.values()) == {"restricted", naming.POD_SECURITY_VERSION}


@pytest.mark.parametrize("image, registry", [
    ("ghcr.io/cameleer/server" + DIGEST, "ghcr.io"),
    ("localhost:5000/server" + DIGEST, "localhost:5000"),
    ("registry.example.com:443/a/b/c" + DIGEST, "registry.example.com:443"),
    ("library/nginx" + DIGEST, "docker.io"),
    ("nginx" + DIGEST, "docker.io"),
])
def test_registry_of(image, registry):
    assert registry_of(image) == registry


def test_digest_pinning():
    assert is_digest_pinned("ghcr.io/x/y" + DIGEST)
    assert is_digest_pinned("ghcr.io/x/y:1.0" + DIGEST)
    assert not is_digest_pinned("ghcr.io/x/y:1.0")
    assert not is_digest_pinned("ghcr.io/x/y@sha256:" + "0" * 63)
    assert not is_digest_pinned("ghcr.io/x/y@sha256:" + "G" * 64)
    with pytest.raises(ImageError, match="'ghcr.io/x/y:latest' is not pinned by digest"):
        validate_pinned_image("ghcr.io/x/y:latest")


def test_database_endpoint_from_an_address():
    endpoint = DatabaseEndpoint.parse("203.0.113.10:5432")
    assert (endpoint.host, endpoint.port, endpoint.cidr) == ("203.0.113.10", 5432, "203.0.113.10/32")


def test_database_endpoint_from_a_name_needs_a_cidr():
    with pytest.raises(ValueError, match="give its network as databaseCidr"):
        DatabaseEndpoint.parse("db.internal:5432")
    assert DatabaseEndpoint.parse("db.internal:5432", "10.20.0.0/24").cidr == "10.20.0.0/24"


@pytest.mark.parametrize("bad", ["203.0.113.10", "203.0.113.10:", ":5432", "203.0.113.10:99999"])
def test_bad_database_endpoints(bad):
    with pytest.raises(ValueError):
        DatabaseEndpoint.parse(bad)
