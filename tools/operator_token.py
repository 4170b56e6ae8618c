"""The operator token `make run` keeps in .data/operator-token, re-minted when it runs out.

    python -m tools.operator_token ensure .data/operator-token [--min-left SECONDS] [--name NAME]
    python -m tools.operator_token fresh .data/operator-token [--min-left SECONDS]

`fresh` exits 0 when the file holds a token whose `exp` is more than SECONDS away (default one
day), 1 otherwise (missing, unreadable, not a JWS, no `exp`, expired or about to be). `ensure`
keeps a fresh token and otherwise mints a new one with `flask --app wsgi operator-token`
(VAULT_ADDR and VAULT_APPROLE_FILE must be set), written 0600 in place of the old one. The
signature is not checked: this only decides whether to re-mint, and JetPero verifies every
token it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jws import extract_compact

DEFAULT_MIN_LEFT = 86400
ROOT = Path(__file__).resolve().parents[1]


def seconds_left(token: str, now: float | None = None) -> float | None:
    """Seconds until the token's `exp` (negative once expired); None if it has no readable `exp`."""
    try:
        claims = json.loads(extract_compact(token.strip().encode()).payload)
        exp = claims["exp"]
    except (JoseError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        return None
    return exp - (time.time() if now is None else now)


def is_fresh(path: Path, min_left: float = DEFAULT_MIN_LEFT, now: float | None = None) -> bool:
    try:
        token = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    left = seconds_left(token, now)
    return left is not None and left > min_left


def ensure(path: Path, min_left: float = DEFAULT_MIN_LEFT, name: str = "make-run") -> bool:
    """Keep the token in `path` if fresh, else mint and write a new one; True if minted."""
    if is_fresh(path, min_left):
        return False
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "flask", "--app", "wsgi", "operator-token", "--name", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    token = result.stdout.strip()
    if result.returncode != 0 or seconds_left(token) is None:
        raise RuntimeError(f"could not mint an operator token: {result.stderr.strip() or 'no token printed'}")
    tmp = path.with_name(path.name + ".tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.operator_token", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fresh = sub.add_parser("fresh", help="exit 0 if the token file is good for more than --min-left seconds")
    fresh.add_argument("path", type=Path)
    fresh.add_argument("--min-left", type=float, default=DEFAULT_MIN_LEFT)
    keep = sub.add_parser("ensure", help="mint a new token into the file unless it holds a fresh one")
    keep.add_argument("path", type=Path)
    keep.add_argument("--min-left", type=float, default=DEFAULT_MIN_LEFT)
    keep.add_argument("--name", default="make-run", help="who the token is for (shown in audit fields)")
    args = parser.parse_args(argv)
    if args.command == "fresh":
        return 0 if is_fresh(args.path, args.min_left) else 1
    try:
        minted = ensure(args.path, args.min_left, args.name)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"operator token {'minted' if minted else 'still valid'}: {args.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
