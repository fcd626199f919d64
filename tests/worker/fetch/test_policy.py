"""The fetch policy on its own: what the defaults admit, which addresses count as public, the
opt-in lists, log redaction, and random input that must only ever be refused cleanly."""

from __future__ import annotations

import string
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.settings_fetch import FetchSettings
from schemas.uris import redact_uri
from worker.fetch import FetchError, FetchPolicy
from worker.fetch.policy import S3Object, embedded_ipv4, is_public
from worker.fetch.web import answer

pytestmark = pytest.mark.unit

T = TypeVar("T")

DEFAULTS = FetchPolicy(FetchSettings())


def refusal(policy: FetchPolicy, uri: str) -> str:
    with pytest.raises(FetchError) as caught:
        policy.target(uri)
    assert caught.value.reason == "uri_not_allowed"
    return caught.value.cause


def outcome(call: Callable[..., T], *args: Any) -> T | FetchError:
    """What ``call`` returns, or the FetchError it raised; any other exception fails the test."""
    try:
        return call(*args)
    except FetchError as err:
        return err


def test_the_defaults_admit_https_on_public_hosts_only() -> None:
    url = DEFAULTS.target("https://cdn.example.com/a.png?sig=1")
    assert isinstance(url, httpx.URL)
    assert url.host == "cdn.example.com"
    assert refusal(DEFAULTS, "http://cdn.example.com/a.png") == "scheme not admitted"
    assert refusal(DEFAULTS, "https://cdn.example.com:8443/a.png") == "port not admitted"
    assert refusal(DEFAULTS, "s3://bucket/a.png") == "bucket not admitted"
    assert refusal(DEFAULTS, "file:///etc/shadow") == "scheme not admitted"
    assert refusal(DEFAULTS, "https://127.0.0.1/a.png") == "the host's address is not public"
    assert refusal(DEFAULTS, "https://169.254.169.254/") == "the host's address is not public"


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://host/a.png",
        "gopher://host:70/_",
        "dict://host:11211/",
        "https://user:pw@cdn.example.com/a.png",
        "https://cdn.example.com@127.0.0.1/",
        "https:///a.png",
        "https://[::1/",
        "https://cdn.example.com:99999/",
        "",
        "//cdn.example.com/a.png",
        "javascript:alert(1)",
    ],
)
def test_malformed_and_foreign_uris_are_refused(uri: str) -> None:
    refusal(DEFAULTS, uri)


def test_s3_needs_a_listed_bucket_and_a_key() -> None:
    policy = FetchPolicy(FetchSettings(s3_buckets={"images"}))
    assert policy.target("s3://images/a/b.png") == S3Object("images", "a/b.png")
    assert refusal(policy, "s3://other/a.png") == "bucket not admitted"
    assert refusal(policy, "s3://images/") == "no object key"
    assert refusal(policy, "s3://user@images/a.png") == "bucket not admitted"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT, some cloud metadata)
        ("169.254.169.254", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under judgement, not a bind
        ("224.0.1.1", False),  # Python calls this multicast range global
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fec0::1", False),  # site-local: Python calls it global
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo of 127.0.0.1
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    ip = ip_address(address)
    assert is_public(embedded_ipv4(ip) or ip) is public
    admitted = True
    try:
        DEFAULTS.check_addresses("host.example", [address])
    except FetchError:
        admitted = False
    assert admitted is public


def test_listed_networks_and_hosts_admit_private_addresses_but_never_link_local() -> None:
    policy = FetchPolicy(
        FetchSettings(private_networks=["10.0.0.0/8", "::1/128"], private_hosts={"Img.Internal."})
    )
    policy.check_addresses("store.example", ["10.9.8.7", "::1"])
    policy.check_addresses("img.internal", ["192.168.0.5"])
    for host, address in [
        ("store.example", "192.168.0.5"),
        ("store.example", "169.254.169.254"),
        ("img.internal", "169.254.169.254"),
        ("img.internal", "fe80::1"),
        ("img.internal", "::ffff:169.254.169.254"),
        ("img.internal", "224.0.0.1"),
    ]:
        with pytest.raises(FetchError):
            policy.check_addresses(host, [address])


def test_one_refused_address_among_public_ones_refuses_the_host() -> None:
    with pytest.raises(FetchError):
        DEFAULTS.check_addresses("host.example", ["8.8.8.8", "127.0.0.1"])


def test_everything_listed_still_refuses_link_local_multicast_and_unspecified() -> None:
    policy = FetchPolicy(FetchSettings(private_networks=["0.0.0.0/0", "::/0"]))
    policy.check_addresses("host.example", ["127.0.0.1", "10.0.0.1", "::1", "fd00::1"])
    never = ["169.254.0.1", "fe80::1", "0.0.0.0", "::", "239.1.1.1", "ff05::2"]  # noqa: S104
    for address in never:
        with pytest.raises(FetchError):
            policy.check_addresses("host.example", [address])


@pytest.mark.parametrize(
    ("uri", "logged"),
    [
        ("https://cdn.example.com/a.png?X-Amz-Signature=abc#f", "https://cdn.example.com/a.png"),
        ("https://user:secret@cdn.example.com/a.png", "https://cdn.example.com/a.png"),
        ("file:///data/a.png?x", "file:///data/a.png"),
        ("s3://bucket/key.png", "s3://bucket/key.png"),
        ("https://[::1/", "(unparsable URI)"),
    ],
)
def test_redacted_uris_keep_no_query_fragment_or_credentials(uri: str, logged: str) -> None:
    assert redact_uri(uri) == logged


URI_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200
) | st.from_regex(r"\A(https?|file|s3|ftp)://[^\s]{0,80}\Z")

HOSTS = st.one_of(
    st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip)),
    st.text(alphabet=string.ascii_letters + string.digits + ".-_%[]:@", max_size=40),
)
URIS = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(["http", "https", "HTTPS", "file", "s3", "ftp", ""]),
    HOSTS,
    st.sampled_from(["", ":0", ":80", ":443", ":65536", ":-1", ":x"]),
    st.text(max_size=40).map(lambda p: "/" + p),
)
OPEN_POLICY = FetchPolicy(
    FetchSettings(
        schemes={"http", "https"},
        ports={80, 443},
        s3_buckets={"images"},
        file_roots=[Path("/srv/images")],
        private_networks=["10.0.0.0/8"],
        private_hosts={"localhost"},
    )
)


@given(uri=URI_TEXT | URIS)
@settings(max_examples=500, deadline=None)
def test_any_uri_is_admitted_or_refused_with_a_fetch_error(uri: str) -> None:
    for policy in (DEFAULTS, OPEN_POLICY):
        target = outcome(policy.target, uri)
        if isinstance(target, FetchError):
            assert target.reason == "uri_not_allowed"
        elif isinstance(target, Path):
            assert target.is_relative_to("/srv/images")
        elif isinstance(target, httpx.URL):
            assert target.scheme in policy.settings.schemes
            assert not target.userinfo


@given(location=st.binary(max_size=120))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_redirect_location_is_followed_or_refused_with_a_fetch_error(location: bytes) -> None:
    base = httpx.URL("https://cdn.example.com/a/b.png")
    response = httpcore.Response(302, headers=[(b"Location", location)])
    hop = outcome(answer, base, response, 1000)
    if isinstance(hop, httpx.URL):
        hop = outcome(DEFAULTS.web_url, hop)
    if isinstance(hop, FetchError):
        assert hop.reason in {"uri_not_allowed", "unreachable_uri"}
    else:
        assert isinstance(hop, httpx.URL)


@given(address=st.ip_addresses())
def test_no_listing_ever_admits_link_local_and_the_defaults_admit_only_public(
    address: object,
) -> None:
    ip = ip_address(str(address))
    everything = FetchPolicy(FetchSettings(private_networks=["0.0.0.0/0", "::/0"]))
    inner = embedded_ipv4(ip)
    link_local = ip.is_link_local or (inner is not None and inner.is_link_local)
    for policy in (DEFAULTS, everything):
        try:
            policy.check_addresses("host.example", [str(ip)])
        except FetchError:
            continue
        assert not link_local
        if policy is DEFAULTS:
            assert is_public(inner or ip)
