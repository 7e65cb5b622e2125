"""The lowest layer's helpers: one line of an exception, close-match hints, stable digests."""

import errno
import hashlib

from ray_nas.digest import canonical_json, sha256_hex
from ray_nas.errors import did_you_mean, first_line


def test_first_line_keeps_the_first_non_blank_line_on_one_line():
    e = ValueError("\n  bad   value\tfor x\nsecond line")
    assert first_line(e) == "bad value for x"
    assert first_line(e, limit=3) == "bad"
    assert first_line(KeyError()) == "KeyError"  # no message: the type names it


def test_first_line_of_an_os_error_names_the_file():
    e = PermissionError(errno.EACCES, "Permission denied", "/runs/job")
    assert first_line(e) == "/runs/job: Permission denied"
    # not-found messages already name the file
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")
    assert first_line(missing) == "[Errno 2] No such file or directory: '/x'"


def test_did_you_mean():
    assert did_you_mean("epoch", ["epochs", "seed"]) == "; did you mean 'epochs'?"
    assert did_you_mean("zzz", ["epochs", "seed"]) == ""
    assert did_you_mean("zzz", ["epochs", "seed"], list_valid=True) == "; valid: epochs, seed"
    two = did_you_mean("ss_eq1", ["ss_eq12", "final", "ss_eq13"], n=3)
    assert two in (
        "; did you mean 'ss_eq12' or 'ss_eq13'?",
        "; did you mean 'ss_eq13' or 'ss_eq12'?",
    )


def test_sha256_hex_is_hashlib_over_the_pieces():
    assert sha256_hex("a|b", 16) == hashlib.sha256(b"a|b").hexdigest()[:16]
    assert sha256_hex(["a", b"|", "b"]) == hashlib.sha256(b"a|b").hexdigest()
    assert canonical_json({"b": [1, 2], "a": 1.5}) == '{"a":1.5,"b":[1,2]}'
