"""Tests of ``nbflow.hashing``: canonical JSON, content ids and secret detection (DESIGN §2, §3).

Fake credentials are assembled at run time from pieces so that this file does not itself look
like it leaks one to a secret scanner.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
from decimal import Decimal
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbflow.hashing import (
    ALGORITHM,
    FloatNotAllowed,
    NotJsonValue,
    SecretFinding,
    canonical_json,
    check_canonical,
    content_id,
    content_id_of_buffers,
    digest_of,
    find_secrets,
    find_secrets_in_text,
    is_content_id,
    looks_like_credential_name,
    new_hasher,
)

EMPTY_BLAKE3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
ABC_BLAKE3 = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
ID_SHAPE = re.compile(r"blake3:[0-9a-f]{64}")
MIB = 1 << 20

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same document with the insertion order of every dict's keys shuffled."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


def assert_keys_sorted(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys)
    return dict(pairs)


def outside_strings(text: str) -> str:
    """The characters of JSON ``text`` that are not inside a string literal."""
    kept: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            kept.append(char)
    return "".join(kept)


# -- canonical JSON -----------------------------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_depth_and_is_compact() -> None:
    document = {"b": [1, {"d": None, "c": True}], "a": "x", "aa": {"z": 0, "y": [False]}}
    assert canonical_json(document) == (
        b'{"a":"x","aa":{"y":[false],"z":0},"b":[1,{"c":true,"d":null}]}'
    )


def test_canonical_json_keeps_non_ascii_text_as_utf8() -> None:
    data = canonical_json({"name": "café ✓ 日本 🎉"})
    assert data == '{"name":"café ✓ 日本 🎉"}'.encode()
    assert b"\\u" not in data
    assert "🎉".encode() in data


def test_canonical_json_still_escapes_control_characters() -> None:
    assert canonical_json('a\nb\t"c"') == b'"a\\nb\\t\\"c\\""'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"null"),
        (True, b"true"),
        (False, b"false"),
        (0, b"0"),
        (-17, b"-17"),
        (10**30, b"1000000000000000000000000000000"),
        ("", b'""'),
        ([], b"[]"),
        ({}, b"{}"),
    ],
)
def test_canonical_json_accepts_none_bool_int_and_str(value: Any, expected: bytes) -> None:
    check_canonical(value)
    assert canonical_json(value) == expected


def test_canonical_json_encodes_tuples_as_lists() -> None:
    assert canonical_json((1, (2, 3), {"a": ()})) == b'[1,[2,3],{"a":[]}]'
    assert canonical_json((1, (2, 3))) == canonical_json([1, [2, 3]])


@settings(max_examples=200, deadline=None)
@given(value=json_values, seed=st.integers(0, 2**32 - 1))
def test_equal_documents_give_identical_bytes_and_ids(value: Any, seed: int) -> None:
    reordered = shuffled(value, random.Random(seed))
    assert reordered == value
    assert canonical_json(reordered) == canonical_json(value)
    assert content_id(canonical_json(reordered)) == content_id(canonical_json(value))


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_canonical_json_round_trips_sorted_and_without_whitespace(value: Any) -> None:
    data = canonical_json(value)
    text = data.decode("utf-8")
    assert json.loads(text, object_pairs_hook=assert_keys_sorted) == value
    assert not re.search(r"\s", outside_strings(text))


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (1.0, "$"),
        ([1, 2.5], "$[1]"),
        ((0, 1, -0.0), "$[2]"),
        ({"a": {"b": [0, {"c": 0.1}]}}, "$.a.b[1].c"),
        ({"ok": 1, "nan": float("nan")}, "$.nan"),
        ([{"x": [float("inf")]}], "$[0].x[0]"),
    ],
)
def test_floats_are_refused_anywhere_with_their_path(value: Any, path: str) -> None:
    with pytest.raises(FloatNotAllowed) as caught:
        canonical_json(value)
    assert caught.value.path == path
    assert path in str(caught.value)
    assert isinstance(caught.value, ValueError)


path_steps = st.lists(
    st.one_of(
        st.text(alphabet="abcxyz_", min_size=1, max_size=4).map(lambda k: ("key", k)),
        st.integers(0, 3).map(lambda i: ("index", i)),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(steps=path_steps, filler=st.lists(json_scalars, max_size=3))
def test_float_path_names_where_it_is_nested(
    steps: list[tuple[str, Any]], filler: list[Any]
) -> None:
    document: Any = 0.5
    for kind, step in reversed(steps):
        if kind == "key":
            document = {"~before": filler, step: document}
        else:
            document = [*([None] * step), document]
    expected = "$" + "".join(f".{s}" if kind == "key" else f"[{s}]" for kind, s in steps)
    with pytest.raises(FloatNotAllowed) as caught:
        canonical_json(document)
    assert caught.value.path == expected


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1: "a"}, "$.<key 1>"),
        ({"a": {None: 1}}, "$.a.<key None>"),
        ({("k",): 1}, "$.<key ('k',)>"),
        ({True: 1}, "$.<key True>"),
    ],
)
def test_non_string_keys_are_refused(value: Any, path: str) -> None:
    with pytest.raises(NotJsonValue) as caught:
        canonical_json(value)
    assert caught.value.path == path
    assert path in str(caught.value)


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"a": {1, 2}}, "$.a", "set"),
        ([b"raw"], "$[0]", "bytes"),
        ({"when": Decimal("1")}, "$.when", "Decimal"),
        ([0, [object()]], "$[1][0]", "object"),
        (1j, "$", "complex"),
    ],
)
def test_non_json_values_are_refused(value: Any, path: str, type_name: str) -> None:
    with pytest.raises(NotJsonValue) as caught:
        check_canonical(value)
    assert caught.value.path == path
    assert path in str(caught.value)
    assert type_name in str(caught.value)
    with pytest.raises(NotJsonValue):
        canonical_json(value)


def test_lone_surrogate_is_refused_as_not_json() -> None:
    with pytest.raises(NotJsonValue) as caught:
        canonical_json({"file": "data\udcff.csv"})
    assert caught.value.path == "$.file"


# -- content ids --------------------------------------------------------------------------------


def test_content_id_known_vectors() -> None:
    assert ALGORITHM == "blake3"
    assert content_id(b"") == f"blake3:{EMPTY_BLAKE3}"
    assert content_id(b"abc") == f"blake3:{ABC_BLAKE3}"
    assert content_id_of_buffers([]) == f"blake3:{EMPTY_BLAKE3}"
    assert content_id_of_buffers([b"a", b"", memoryview(b"bc")]) == f"blake3:{ABC_BLAKE3}"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=4096), cuts=st.lists(st.integers(0, 4096), max_size=8))
def test_content_id_equals_id_of_any_split(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    identifier = content_id(data)
    assert ID_SHAPE.fullmatch(identifier)
    assert is_content_id(identifier)
    assert content_id(memoryview(data)) == identifier
    assert content_id_of_buffers(pieces) == identifier
    assert content_id_of_buffers(memoryview(p) for p in pieces) == identifier
    assert content_id_of_buffers([b"", *pieces, b""]) == identifier


@settings(max_examples=100, deadline=None)
@given(a=st.binary(max_size=64), b=st.binary(max_size=64))
def test_different_contents_have_different_ids(a: bytes, b: bytes) -> None:
    assert (content_id(a) == content_id(b)) == (a == b)


@pytest.mark.parametrize("size", [4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 9 * MIB + 12345])
def test_multi_megabyte_inputs_hash_like_the_incremental_hasher(size: int) -> None:
    data = random.Random(size).randbytes(size)
    single_thread = blake3.blake3(data, max_threads=1).hexdigest()
    hasher = new_hasher()
    view = memoryview(data)
    for start in range(0, size, MIB + 7):
        hasher.update(view[start : start + MIB + 7])
    assert content_id(data) == f"blake3:{single_thread}"
    assert content_id(view) == f"blake3:{single_thread}"
    assert hasher.hexdigest() == single_thread
    assert content_id_of_buffers([view[: size // 3], view[size // 3 :]]) == content_id(data)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "blake3:",
        "blake3:" + "a" * 63,
        "blake3:" + "a" * 65,
        "blake3:" + "A" * 64,
        "blake3:" + "g" * 64,
        "sha256:" + "a" * 64,
        "BLAKE3:" + "a" * 64,
        " blake3:" + "a" * 64,
        "blake3:" + "a" * 64 + "\n",
        "blake3:" + "a" * 64 + " ",
        "a" * 64,
    ],
)
def test_malformed_ids_are_not_content_ids(text: str) -> None:
    assert not is_content_id(text)
    with pytest.raises(ValueError, match="not a content id") as caught:
        digest_of(text)
    assert repr(text) in str(caught.value)


def test_digest_of_returns_the_hex_part() -> None:
    assert digest_of(f"blake3:{EMPTY_BLAKE3}") == EMPTY_BLAKE3
    assert digest_of(content_id(b"abc")) == ABC_BLAKE3


# -- secret detection ---------------------------------------------------------------------------


def _jwt() -> str:
    def part(document: dict[str, Any]) -> str:
        raw = json.dumps(document).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': '1234567890'})}.{'S' * 43}"


_PEM_BODY = "MIIEowIBAAKCAQEA" + "q" * 40
TOKEN_CASES = [
    pytest.param(
        f"-----BEGIN RSA PRIVATE KEY-----\n{_PEM_BODY}\n-----END RSA PRIVATE KEY-----",
        _PEM_BODY,
        "private key block",
        id="rsa-private-key",
    ),
    pytest.param(
        f"-----BEGIN EC PRIVATE KEY-----\n{_PEM_BODY}\n", _PEM_BODY, "private key block", id="ec"
    ),
    pytest.param(
        f"key = '''-----BEGIN OPENSSH PRIVATE KEY-----\n{_PEM_BODY}'''",
        _PEM_BODY,
        "private key block",
        id="openssh",
    ),
    pytest.param(
        f"-----BEGIN PRIVATE KEY-----\n{_PEM_BODY}", _PEM_BODY, "private key block", id="pkcs8"
    ),
    pytest.param(
        f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{_PEM_BODY}",
        _PEM_BODY,
        "private key block",
        id="encrypted-pkcs8",
    ),
    pytest.param(
        f"s3 = boto3.client('s3', aws_access_key_id={'AKIA' + 'IOSFODNN7EXAMPL3'!r})",
        "AKIA" + "IOSFODNN7EXAMPL3",
        "AWS access key id",
        id="aws-akia",
    ),
    pytest.param(
        "creds: " + "ASIA" + "Y34FZKBOKMUTVV7A",
        "ASIA" + "Y34FZKBOKMUTVV7A",
        "AWS access key id",
        id="aws-asia",
    ),
    pytest.param(
        "gh = Github(" + repr("ghp_" + "aB3" * 12) + ")",
        "ghp_" + "aB3" * 12,
        "GitHub token",
        id="github-ghp",
    ),
    pytest.param(
        "GH=" + "github_pat_" + "11ABCDEFG0" + "x" * 60,
        "11ABCDEFG0" + "x" * 60,
        "GitHub token",
        id="github-pat",
    ),
    pytest.param(
        "client = WebClient(" + repr("xoxb-" + "1234567890-0987654321-AbCdEfGh") + ")",
        "1234567890-0987654321-AbCdEfGh",
        "Slack token",
        id="slack-xoxb",
    ),
    pytest.param(
        "xoxp-" + "2222222222-333333333333-abcdef",
        "2222222222-333333333333-abcdef",
        "Slack token",
        id="slack-xoxp",
    ),
    pytest.param(
        "maps.Client(key=" + repr("AIza" + "SyD" + "k" * 32) + ")",
        "SyD" + "k" * 32,
        "Google API key",
        id="google-aiza",
    ),
    pytest.param(
        "stripe.api_key_value = " + "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "4eC39HqLyjWDarjtT1zdp7dc",
        "Stripe key",
        id="stripe-live",
    ),
    pytest.param(
        "headers = {'Authorization': 'Bearer ' + " + repr(_jwt()) + "}",
        _jwt(),
        "JSON web token",
        id="jwt",
    ),
]


@pytest.mark.parametrize(("text", "secret", "kind"), TOKEN_CASES)
def test_token_formats_are_detected(text: str, secret: str, kind: str) -> None:
    findings = find_secrets_in_text(text, where="cell load")
    assert kind in {f.kind for f in findings}
    assert all(f.where == "cell load" for f in findings)
    assert secret not in str(findings)
    assert secret not in repr(findings)


ASSIGNMENT_CASES = [
    pytest.param('password = "hunter22-horse"', "hunter22-horse", "password", id="password"),
    pytest.param("DB_PASSWORD='hunter22-horse'", "hunter22-horse", "DB_PASSWORD", id="upper"),
    pytest.param('client_secret = "d2Vw-Q8sZ"', "d2Vw-Q8sZ", "client_secret", id="secret"),
    pytest.param('token = "5f2b8c0e9a"', "5f2b8c0e9a", "token", id="token"),
    pytest.param('api_key = "k-281937"', "k-281937", "api_key", id="api_key"),
    pytest.param('apiKey = "k-281937"', "k-281937", "apiKey", id="camel"),
    pytest.param('api_key: str = "k-281937"', "k-281937", "api_key", id="annotated"),
    pytest.param(
        'auth_token: Optional[str] = "k-281937"', "k-281937", "auth_token", id="annotated-generic"
    ),
    pytest.param(
        'config = {"password": "hunter22-horse"}', "hunter22-horse", "password", id="dict"
    ),
    pytest.param(
        "conn = connect(host='db', password='hunter22-horse')",
        "hunter22-horse",
        "password",
        id="keyword",
    ),
    pytest.param(
        'SECRET_KEY = r"django-insecure-0x"', "django-insecure-0x", "SECRET_KEY", id="raw-prefix"
    ),
]


@pytest.mark.parametrize(("text", "secret", "name"), ASSIGNMENT_CASES)
def test_literals_assigned_to_credential_names_are_detected(
    text: str, secret: str, name: str
) -> None:
    findings = find_secrets_in_text(text)
    assert findings, text
    assert any(name in f.kind for f in findings)
    assert secret not in str(findings)
    assert secret not in repr(findings)


ORDINARY_CELL = """
import os
import pandas as pd
from transformers import AutoTokenizer

token = os.environ["T"]
api_key = os.getenv("API_KEY")
password = ""
secret = None
tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")
tokens = tokenizer(text)
sort_key = "name"
primary_key = "customer_id"
cache_key = "daily-report"
df = pd.read_csv("data/sales.csv")
df = df.sort_values(by=sort_key).set_index(primary_key)
keys = list(df.columns)
monkey = "banana"
summary = df.groupby("region").agg({"revenue": "sum", "orders": "count"})
print(f"{len(tokens)} tokens, keyboard layout {os.environ.get('LANG', 'C')}")
"""


@pytest.mark.parametrize(
    "text",
    [
        'token = os.environ["T"]',
        "tokens = tokenizer(text)",
        'sort_key = "name"',
        'password = ""',
        "password = ''",
        'token = "<your-token>"',
        'api_key = "${API_KEY}"',
        'password = "%(password)s"',
        'api_key = "{api_key}"',
        'secret = "..."',
        'password = "changeme"',
        'token = f"{prefix}-{suffix}"',
        'if password == "hunter22-horse":',
        ORDINARY_CELL,
        "The secret of a good tokenizer is that passwords and keys never appear in logs.",
        "monkey keyboard turnkey whisky hockey donkey",
        "sk-",
        "AKIA-short",
        "ghp_short",
        "eyJhbGciOiJIUzI1NiJ9",
    ],
)
def test_ordinary_text_is_not_flagged(text: str) -> None:
    assert find_secrets_in_text(text) == []


@pytest.mark.parametrize(
    "text",
    [
        'label_key = "label"',
        'text_key = "text"',
        's3_key = "raw/2024/train.parquet"',
    ],
)
def test_data_key_literals_are_not_flagged(text: str) -> None:
    assert find_secrets_in_text(text) == []


def test_google_key_ending_in_dash_is_detected() -> None:
    key = "AIza" + "SyD" + "k" * 31 + "-"
    assert "Google API key" in {f.kind for f in find_secrets_in_text(f"key = {key!r}")}


def test_literal_assigned_to_environment_credential_is_detected() -> None:
    findings = find_secrets_in_text('os.environ["DB_PASSWORD"] = "hunter22-horse"')
    assert findings
    assert "hunter22-horse" not in str(findings)


def test_finding_is_frozen_and_names_kind_and_place() -> None:
    finding = SecretFinding("GitHub token", "$.plan.states[0].source")
    assert "GitHub token" in repr(finding)
    with pytest.raises(AttributeError):
        finding.kind = "other"  # type: ignore[misc]


def test_json_credential_keys_with_string_values_are_found_with_their_path() -> None:
    document = {
        "db": {"host": "localhost", "password": "hunter22-horse"},
        "services": [{"name": "maps", "api_key": "k-281937"}],
        "auth": ("x", {"clientSecret": "d2Vw-Q8sZ"}),
    }
    findings = find_secrets(document)
    assert {f.where for f in findings} == {
        "$.db.password",
        "$.services[0].api_key",
        "$.auth[1].clientSecret",
    }
    for secret in ("hunter22-horse", "k-281937", "d2Vw-Q8sZ"):
        assert secret not in str(findings)
        assert secret not in repr(findings)


def test_json_strings_are_scanned_for_token_formats() -> None:
    token = "ghp_" + "aB3" * 12
    findings = find_secrets({"parameters": {"note": f"use {token} for the API"}})
    assert [(f.kind, f.where) for f in findings] == [("GitHub token", "$.parameters.note")]
    assert token not in str(findings)


def test_json_source_text_is_scanned_for_assigned_literals() -> None:
    findings = find_secrets({"states": [{"source": 'password = "hunter22-horse"\nx = 1'}]})
    assert [f.where for f in findings] == ["$.states[0].source"]


@pytest.mark.parametrize(
    "document",
    [
        {"password": ""},
        {"password": "   "},
        {"password": None},
        {"token": 12345},
        {"secret": ["a", "b"]},
        {"password": "<your-password>"},
        {"api_key": "${API_KEY}"},
        {"tokens": "the quick brown fox"},
        {"tokenizer": "bert-base-uncased"},
        {"sort_key": "name", "primary_key": "id", "key": "value"},
        {"keys": "a,b,c", "monkey": "banana"},
        {"flow_id": "notebook.ipynb", "plan": {"states": [{"id": "load", "source": "x = 1"}]}},
        ["password", "token", "secret"],
        "password",
        42,
        None,
    ],
)
def test_ordinary_json_is_not_flagged(document: Any) -> None:
    assert find_secrets(document) == []


@pytest.mark.parametrize(
    "name",
    [
        "api_token",
        "DB_PASSWORD",
        "apiKey",
        "aws_secret_access_key",
        "signing_key",
        "password",
        "passwd",
        "client_secret",
        "GITHUB_TOKEN",
        "credentials",
        "OPENAI_API_KEY",
        "ApiKey",
        "private_key",
    ],
)
def test_credential_names(name: str) -> None:
    assert looks_like_credential_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "tokens",
        "tokenizer",
        "key",
        "keys",
        "sort_key",
        "primary_key",
        "pwd",
        "monkey",
        "keyboard",
        "num_tokens",
        "dict_keys",
        "cache_key",
        "input_ids",
        "",
    ],
)
def test_ordinary_names(name: str) -> None:
    assert not looks_like_credential_name(name)


@pytest.mark.parametrize("name", ["rng_key", "prng_key", "token_ids", "token_type_ids"])
def test_data_science_names_are_not_credentials(name: str) -> None:
    assert not looks_like_credential_name(name)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_detection_accepts_any_text(text: str) -> None:
    findings = find_secrets_in_text(text, where="w")
    for finding in findings:
        assert finding.where == "w"
    assert looks_like_credential_name(text) in (True, False)


@given(json_values)
@settings(max_examples=300)
def test_the_fast_first_look_never_misses_what_the_full_check_finds(value: Any) -> None:
    from nbflow.hashing.secrets import might_hold_secret

    text = json.dumps(value, ensure_ascii=False)
    if find_secrets(value):
        assert might_hold_secret(text)


def test_the_fast_first_look_sees_every_planted_kind() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from secret_corpus import formatted_token

    from nbflow.hashing.secrets import might_hold_secret

    rng = random.Random(5)
    for index in range(40):
        token = formatted_token(rng, index)
        assert find_secrets({"v": token})
        assert might_hold_secret(json.dumps({"v": token}))
    assert might_hold_secret('{"DB_Password": "x"}')
    assert not might_hold_secret('{"state": 3, "payload": "hello"}')
