from __future__ import annotations

import pytest

from httpsync.engine.url import (
    display_url,
    fill_placeholders,
    format_param_value,
    join_url,
    merge_query,
    placeholder_names,
    same_origin,
)
from httpsync.errors import ConfigError


@pytest.mark.parametrize(
    ("base", "endpoint", "expected"),
    [
        ("https://h/v1/tenant/12", "/users", "https://h/v1/tenant/12/users"),
        ("https://h/v1/tenant/12/", "/users", "https://h/v1/tenant/12/users"),
        ("https://h/v1/tenant/12", "users", "https://h/v1/tenant/12/users"),
        ("https://h/v1/tenant/12//", "//users/", "https://h/v1/tenant/12/users/"),
        ("https://h", "/users", "https://h/users"),
        ("https://h/", "users", "https://h/users"),
        ("https://h:8443/api", "/users?active=true", "https://h:8443/api/users?active=true"),
        ("https://h/api?tenant=1", "/users?active=true", "https://h/api/users?tenant=1&active=true"),
        ("https://h/v1", "https://h/v2/users?x=1", "https://h/v2/users?x=1"),
        ("https://h:443/v1", "https://h/other", "https://h/other"),
        ("https://h/v1", "//evil.example/x", "https://h/v1/evil.example/x"),
    ],
)
def test_join_keeps_the_base_path(base: str, endpoint: str, expected: str) -> None:
    assert join_url(base, endpoint) == expected


@pytest.mark.parametrize("endpoint", ["https://evil.example/users", "http://h/users", "https://h:8443/users"])
def test_join_refuses_another_host(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="another host"):
        join_url("https://h/v1", endpoint)


@pytest.mark.parametrize("base", ["ftp://h/x", "h/x", "https://"])
def test_join_refuses_a_bad_base(base: str) -> None:
    with pytest.raises(ConfigError, match="baseUrl"):
        join_url(base, "/users")


def test_join_refuses_an_empty_endpoint() -> None:
    with pytest.raises(ConfigError, match="empty"):
        join_url("https://h", "  ")


def test_placeholders_in_order_without_duplicates() -> None:
    assert placeholder_names("/orgs/{org}/repos/{repo}/issues/{org}") == ["org", "repo"]
    assert placeholder_names("/users") == []


def test_fill_encodes_every_reserved_character() -> None:
    url = fill_placeholders("/t/{id}/c/{n}", {"id": "a/b c?&#%", "n": 7})
    assert url == "/t/a%2Fb%20c%3F%26%23%25/c/7"


def test_fill_without_a_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\{repo\}"):
        fill_placeholders("/orgs/{org}/repos/{repo}", {"org": "x"})


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (3, "3"), (3.0, "3"), (2.5, "2.5"), ("x y", "x y"), (10**20, str(10**20))],
)
def test_format_param_value(value: object, text: str) -> None:
    assert format_param_value(value) == text


@pytest.mark.parametrize("value", [None, {"a": 1}, [1], float("nan")])
def test_format_param_value_refuses_non_scalars(value: object) -> None:
    with pytest.raises(ValueError):
        format_param_value(value)


def test_merge_query_layers_and_url_params() -> None:
    url = "https://h/u?a=1&b=2"
    assert merge_query(url, {"b": "3", "c": "4"}) == "https://h/u?a=1&b=3&c=4"
    assert merge_query(url, {"b": "3", "c": "4"}, keep_url_params=True) == "https://h/u?a=1&b=2&c=4"
    assert merge_query(url, {"c": "1"}, {"c": "2"}) == "https://h/u?a=1&b=2&c=2"
    assert merge_query(url) == url
    assert merge_query("https://h/u", {"q": "a b&c"}) == "https://h/u?q=a%20b%26c"


def test_display_url_masks_credentials() -> None:
    shown = display_url("https://user:pw-123@h/x?api_key=k-999&page=2&mine=s-777", ["mine"])
    assert "pw-123" not in shown and "k-999" not in shown and "s-777" not in shown
    assert "page=2" in shown and "user:***@h" in shown
    assert display_url("https://h/x?page=2") == "https://h/x?page=2"


def test_same_origin_uses_default_ports() -> None:
    assert same_origin("https://h/a", "https://H:443/b")
    assert not same_origin("https://h/a", "http://h/a")
    assert not same_origin("https://h/a", "https://h.evil/a")
