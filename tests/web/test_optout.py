"""Opt-out signals: X-Robots-Tag, the robots and TDMRep metas and headers, and
tdmrep.json; what is not an opt-out is not one, and nothing a site sends raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from crawler.web.optout import (
    TdmRule,
    location_matches,
    meta_opt_out,
    parse_tdmrep,
    product_token,
    response_opt_out,
    robots_tag_opt_out,
    tdm_header_opt_out,
    tdmrep_opt_out,
    tdmrep_url,
)


@pytest.mark.parametrize(
    ("value", "agent", "signal"),
    [
        ("noai", "", "x-robots-tag: noai"),
        ("NoImageAI", "", "x-robots-tag: noimageai"),
        ("noindex, noml, noai", "", "x-robots-tag: noai,noml"),
        ("noindex", "", None),
        ("googlebot: noai", "imagecrawler", None),
        ("imagecrawler: noai", "ImageCrawler", "x-robots-tag: noai"),
        ("googlebot: noindex, imagecrawler: noimageai", "imagecrawler", "x-robots-tag: noimageai"),
        ("unavailable_after: 25 Jun 2010 15:00:00 PST, noai", "", "x-robots-tag: noai"),
        ("max-image-preview: large", "", None),
        ("", "", None),
    ],
)
def test_x_robots_tag(value, agent, signal):
    assert robots_tag_opt_out(value, agent) == signal


def test_a_robot_name_holds_to_the_end_of_its_own_header():
    assert (
        robots_tag_opt_out(["googlebot: noindex", "noai"], "imagecrawler") == "x-robots-tag: noai"
    )


def test_response_headers_any_case_and_both_signals():
    headers = CaseInsensitiveDict({"x-robots-tag": "noai", "TDM-Reservation": " 1 "})
    assert response_opt_out(headers) == "x-robots-tag: noai; tdm-reservation: 1"
    assert response_opt_out({"Tdm-Reservation": "1"}) == "tdm-reservation: 1"
    assert tdm_header_opt_out({"tdm-reservation": "0"}) is None
    assert tdm_header_opt_out({"tdm-reservation": "yes"}) is None
    assert response_opt_out({"Content-Type": "image/png"}) is None


def test_meta():
    assert meta_opt_out("robots", "noindex, NOAI") == "meta robots: noai"
    assert meta_opt_out("ROBOTS", "noindex") is None
    assert meta_opt_out("mybot", "noimageai", "mybot") == "meta robots: noimageai"
    assert meta_opt_out("otherbot", "noimageai", "mybot") is None
    assert meta_opt_out("tdm-reservation", "1") == "meta tdm-reservation: 1"
    assert meta_opt_out("tdm-reservation", "0") is None


def test_tdmrep_file_first_matching_rule_decides():
    body = json.dumps(
        [
            {"location": "/public/*", "tdm-reservation": 0},
            {"location": "/*", "tdm-reservation": 1, "tdm-policy": "https://x/policy.json"},
            {"location": 5, "tdm-reservation": 1},  # malformed: skipped
            "junk",
        ]
    ).encode()
    rules = parse_tdmrep(b"\xef\xbb\xbf" + body)  # a BOM is fine
    assert rules == [
        TdmRule("/public/*", False),
        TdmRule("/*", True, "https://x/policy.json"),
    ]
    assert tdmrep_opt_out(rules, "/public/a.jpg") is None
    assert tdmrep_opt_out(rules, "/gallery/a.jpg") == "tdmrep.json: reserved"
    assert tdmrep_opt_out([], "/a") is None


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/", "/anything", True),
        ("/images/*", "/images/a/b.jpg", True),
        ("/images/*", "/img/a.jpg", False),
        ("/*.jpg$", "/a/b.jpg", True),
        ("/*.jpg$", "/a/b.jpg?x=1", False),
        ("/a*b*c", "/a-x-b-y-c-z", True),
        ("/a*b*c", "/a-c-b", False),
        ("/exact$", "/exact", True),
        ("/exact$", "/exactly", False),
        ("images/*", "/images/a", True),  # relative to the origin
    ],
)
def test_location_patterns(pattern, path, matches):
    assert location_matches(pattern, path) is matches


def test_odd_files_have_no_rules():
    for body in (b"", b"{", b"{}", b"[1, 2]", b"\xff\xfe", b"[" * 100000, b"null"):
        assert parse_tdmrep(body) == []


def test_names():
    assert product_token("ImageCrawler/1.0 (+https://x)") == "imagecrawler"
    assert tdmrep_url("https://h.test:8443/a/b?c") == "https://h.test:8443/.well-known/tdmrep.json"


@given(st.text(max_size=300), st.text(max_size=20))
def test_header_and_meta_readers_never_raise(text, agent):
    robots_tag_opt_out(text, agent)
    meta_opt_out(agent, text, agent)
    response_opt_out({"X-Robots-Tag": text, "tdm-reservation": text}, agent)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode), st.text(max_size=50))
def test_tdmrep_readers_never_raise(body, path):
    tdmrep_opt_out(parse_tdmrep(body), path)
    location_matches(path, path[::-1])
