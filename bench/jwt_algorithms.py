"""Sign and verify cost of an access token for each JWT_ALGORITHM (EdDSA, ES256, RS256, HS256), in-process.

    python -m bench.jwt_algorithms                 # about 10 seconds on 2 cores
    python -m bench.jwt_algorithms --seconds 0.5   # per algorithm and operation (default 1.0)

What is timed is what the service does per token, with the same library calls: PyJWT's encode with a
loaded private key (login, refresh), and PyJWT's decode with the public key, a pinned algorithm and
every required claim (each authenticated request). Keys are loaded once, as the service holds them.
Figures are microseconds per operation (median of 5 timed batches) and operations per second on one
core; the ratio column compares with HS256, what existing installs use today.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import cryptography
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = AUDIENCE = "userapi"
REQUIRED = ["sub", "exp", "iat", "jti", "iss", "aud", "typ", "ver"]
ALGORITHMS = ["EdDSA", "ES256", "RS256", "HS256"]


def _keys(algorithm: str) -> tuple[Any, Any]:
    if algorithm == "EdDSA":
        private: Any = ed25519.Ed25519PrivateKey.generate()
        return private, private.public_key()
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        return private, private.public_key()
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return private, private.public_key()
    secret = b"s" * 48
    return secret, secret


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "typ": "access",
        "ver": 0,
        "sid": str(uuid.uuid4()),
        "role": "user",
    }


def _per_op_us(operation: Callable[[], object], seconds: float) -> float:
    """Median microseconds per call over 5 batches sized to take `seconds` together."""
    operation()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.05:
        operation()
        calls += 1
    batch = max(1, int(calls * seconds / 5 / 0.05))
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch):
            operation()
        samples.append((time.perf_counter() - start) / batch * 1e6)
    return statistics.median(samples)


def measure(algorithm: str, seconds: float) -> dict[str, float | int]:
    private, public = _keys(algorithm)
    claims, kid = _claims(), "bench-key"
    decoder = jwt.PyJWT(options={"require": REQUIRED})
    token = jwt.encode(claims, private, algorithm=algorithm, headers={"kid": kid})

    def sign() -> object:
        return jwt.encode(claims, private, algorithm=algorithm, headers={"kid": kid})

    def verify() -> object:
        return decoder.decode(token, public, algorithms=[algorithm], audience=AUDIENCE, issuer=ISSUER)

    return {
        "sign_us": _per_op_us(sign, seconds),
        "verify_us": _per_op_us(verify, seconds),
        "bytes": len(token),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jwt_algorithms", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="timed seconds per algorithm and operation"
    )
    args = parser.parse_args(argv)
    results = {algorithm: measure(algorithm, args.seconds) for algorithm in ALGORITHMS}
    base = results["HS256"]
    print(
        f"PyJWT {jwt.__version__}, cryptography {cryptography.__version__}, "
        f"OpenSSL-backed; Python {platform.python_version()} on {platform.machine()}, one core"
    )
    print("| algorithm | sign µs | sign/s | vs HS256 | verify µs | verify/s | vs HS256 | token bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for algorithm, r in results.items():
        print(
            f"| {algorithm} | {r['sign_us']:.1f} | {1e6 / r['sign_us']:,.0f} | "
            f"{r['sign_us'] / base['sign_us']:.1f} | {r['verify_us']:.1f} | {1e6 / r['verify_us']:,.0f} | "
            f"{r['verify_us'] / base['verify_us']:.1f} | {r['bytes']} |"
        )


if __name__ == "__main__":
    main()
