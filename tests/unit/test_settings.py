from pathlib import Path

import pytest

from settings import Settings, SettingsError


def test_defaults_are_the_embedded_mode() -> None:
    settings = Settings.from_env({})
    assert settings.embedded
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.seeds_demo
    assert (settings.result_ttl_seconds, settings.max_active_jobs_per_user) == (86_400, 10)


def test_every_unset_variable_takes_the_default_stated_on_its_field() -> None:
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("name", ["MAX_ACTIVE_JOBS_PER_USER", "POLL_AFTER_SECONDS", "LOG_LEVEL", "QUEUE_NAME"])
def test_an_empty_variable_is_unset(name: str) -> None:
    assert Settings.from_env({f"REPORTGEN_{name}": "  "}) == Settings()


def test_production_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "REPORTGEN_DATABASE_URL": "postgresql+asyncpg://u@db/reportgen",
            "REPORTGEN_REDIS_URL": "redis://127.0.0.1:6379/0",
            "REPORTGEN_JWT_SECRET": "x" * 40,
            "REPORTGEN_REPORT_TIMEOUT_SECONDS": "2.5",
            "REPORTGEN_LEASE_SECONDS": "3",
            "REPORTGEN_DATABASE_LOCK_TIMEOUT_SECONDS": "0.5",
            "REPORTGEN_DATABASE_STATEMENT_TIMEOUT_SECONDS": "20",
            "REPORTGEN_DATABASE_POOL_TIMEOUT_SECONDS": "3",
            "REPORTGEN_ALLOW_PRIVILEGED_REPORTS": "true",
        }
    )
    assert not settings.embedded
    assert not settings.seeds_demo
    assert (settings.report_timeout_seconds, settings.lease_seconds) == (2.5, 3.0)
    assert (
        settings.database_lock_timeout_seconds,
        settings.database_statement_timeout_seconds,
        settings.database_pool_timeout_seconds,
    ) == (0.5, 20.0, 3.0)
    assert settings.allow_privileged_reports


def test_every_bad_variable_is_named_on_its_own_line() -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(
            {
                "REPORTGEN_DATABASE_URL": "mysql://nope",
                "REPORTGEN_REDIS_URL": "redis://127.0.0.1:6379/0",
                "REPORTGEN_JWT_SECRET": "short",
                "REPORTGEN_MAX_ATTEMPTS": "many",
                "REPORTGEN_WORKER_CONCURRENCY": "0",
            }
        )
    names = [line.split(":")[0] for line in exc.value.problems]
    assert names == [
        "REPORTGEN_DATABASE_URL",
        "REPORTGEN_JWT_SECRET",
        "REPORTGEN_MAX_ATTEMPTS",
        "REPORTGEN_WORKER_CONCURRENCY",
    ]


def test_production_without_any_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="REPORTGEN_JWT_SECRET, REPORTGEN_JWT_PUBLIC_KEY or REPORTGEN_JWT_JWKS_URL"):
        Settings.from_env({"REPORTGEN_REDIS_URL": "redis://127.0.0.1:6379/0"})


PRODUCTION = {"REPORTGEN_REDIS_URL": "redis://127.0.0.1:6379/0"}
PEM = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"


@pytest.mark.parametrize(
    "env",
    [
        {"REPORTGEN_JWT_JWKS_URL": "https://idp.example/keys"},
        {"REPORTGEN_JWT_JWKS_URL": "http://127.0.0.1:8080/keys", "REPORTGEN_JWT_SECRET": "x" * 40},
        {"REPORTGEN_JWT_JWKS_URL": "http://[::1]/keys"},
        {"REPORTGEN_JWT_JWKS_URL": "http://localhost/keys"},
        {"REPORTGEN_JWT_OIDC_DISCOVERY": "true", "REPORTGEN_JWT_ISSUER": "https://idp.example/realms/x"},
    ],
    ids=["https", "loopback-http-beside-a-secret", "ipv6-loopback", "localhost", "discovery"],
)
def test_identity_provider_keys_are_a_key_of_their_own(env: dict[str, str]) -> None:
    settings = Settings.from_env({**PRODUCTION, **env})

    assert settings.uses_jwks
    assert settings.jwt_jwks_url == env.get("REPORTGEN_JWT_JWKS_URL")


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"REPORTGEN_JWT_JWKS_URL": "http://idp.example/keys"}, "REPORTGEN_JWT_JWKS_URL: keys are fetched over https"),
        ({"REPORTGEN_JWT_JWKS_URL": "http://10.0.0.1/keys"}, "REPORTGEN_JWT_JWKS_URL: keys are fetched over https"),
        ({"REPORTGEN_JWT_JWKS_URL": "ftp://idp.example/keys"}, "REPORTGEN_JWT_JWKS_URL: not a valid URL"),
        (
            {
                "REPORTGEN_JWT_JWKS_URL": "https://idp.example/keys",
                "REPORTGEN_JWT_OIDC_DISCOVERY": "true",
                "REPORTGEN_JWT_ISSUER": "https://idp.example",
            },
            "REPORTGEN_JWT_JWKS_URL and REPORTGEN_JWT_OIDC_DISCOVERY: set one",
        ),
        ({"REPORTGEN_JWT_OIDC_DISCOVERY": "true"}, "REPORTGEN_JWT_ISSUER: unset; REPORTGEN_JWT_OIDC_DISCOVERY fetches"),
        (
            {"REPORTGEN_JWT_OIDC_DISCOVERY": "true", "REPORTGEN_JWT_ISSUER": "http://idp.example"},
            "REPORTGEN_JWT_ISSUER: keys are fetched over https",
        ),
        ({"REPORTGEN_JWT_OIDC_DISCOVERY": "maybe"}, "REPORTGEN_JWT_OIDC_DISCOVERY: 'maybe' is not a boolean"),
    ],
    ids=[
        "http",
        "http-private-address",
        "scheme",
        "url-and-discovery",
        "no-issuer",
        "http-issuer",
        "not-a-flag",
    ],
)
def test_unusable_or_ambiguous_key_sources_are_refused_in_one_line(env: dict[str, str], line: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({**PRODUCTION, "REPORTGEN_JWT_SECRET": "x" * 40, **env})

    assert [problem for problem in exc.value.problems if problem.startswith(line)], exc.value.problems
    assert all("\n" not in problem for problem in exc.value.problems)


def test_public_key_may_be_a_path_and_an_unreadable_one_is_named(tmp_path: Path) -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    (tmp_path / "key.pem").write_text(pem)
    assert Settings.from_env({"REPORTGEN_JWT_PUBLIC_KEY": str(tmp_path / "key.pem")}).jwt_public_key == pem
    with pytest.raises(SettingsError, match="REPORTGEN_JWT_PUBLIC_KEY"):
        Settings.from_env({"REPORTGEN_JWT_PUBLIC_KEY": str(tmp_path / "missing.pem")})


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("5", True),
        ("15", True),
        ("60", True),
        ("300", True),
        ("3600", True),
        ("86400", True),
        ("7", False),
        ("45", False),
        ("90", False),
    ],
)
def test_periodic_intervals_must_fit_a_clock_aligned_schedule(value: str, ok: bool) -> None:
    env = {"REPORTGEN_RECONCILE_INTERVAL_SECONDS": value}
    if ok:
        assert Settings.from_env(env).reconcile_interval_seconds == int(value)
    else:
        with pytest.raises(SettingsError, match="REPORTGEN_RECONCILE_INTERVAL_SECONDS"):
            Settings.from_env(env)


def test_object_storage_is_read_with_the_standard_aws_variables() -> None:
    settings = Settings.from_env(
        {
            "REPORTGEN_ARTIFACT_URL": "s3://reports/prod",
            "REPORTGEN_RESULT_DELIVERY": "redirect",
            "REPORTGEN_RESULT_LINK_SECONDS": "120",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
            "AWS_PROFILE": "not-read-here",
            "HOME": "/root",
        }
    )
    assert (settings.artifact_url, settings.result_delivery, settings.result_link_seconds) == (
        "s3://reports/prod",
        "redirect",
        120,
    )
    assert dict(settings.aws_env) == {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
    }


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"REPORTGEN_ARTIFACT_URL": "https://bucket/prefix"}, "REPORTGEN_ARTIFACT_URL: not a valid URL"),
        ({"REPORTGEN_ARTIFACT_URL": "s3:///prefix"}, "REPORTGEN_ARTIFACT_URL: names no bucket"),
        ({"REPORTGEN_RESULT_DELIVERY": "redirect"}, "REPORTGEN_RESULT_DELIVERY: redirect needs REPORTGEN_ARTIFACT_URL"),
        ({"REPORTGEN_RESULT_DELIVERY": "teleport"}, "REPORTGEN_RESULT_DELIVERY: 'teleport' is not one of"),
        ({"REPORTGEN_RESULT_LINK_SECONDS": "604801"}, "REPORTGEN_RESULT_LINK_SECONDS"),
    ],
)
def test_bad_object_storage_settings_are_refused(env: dict[str, str], line: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(env)
    assert any(problem.startswith(line) for problem in exc.value.problems), exc.value.problems


@pytest.mark.parametrize(("value", "read"), [("0", 0), ("1", 1), ("65536", 65_536), (str(16 * 1_048_576), 16_777_216)])
def test_the_size_up_to_which_artifacts_are_kept_in_the_database_is_read(value: str, read: int) -> None:
    assert Settings().inline_artifact_max_bytes == 262_144
    assert Settings.from_env({"REPORTGEN_INLINE_ARTIFACT_MAX_BYTES": value}).inline_artifact_max_bytes == read


@pytest.mark.parametrize("value", ["-1", str(16 * 1_048_576 + 1), "256k"])
def test_a_bad_inline_artifact_size_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({"REPORTGEN_INLINE_ARTIFACT_MAX_BYTES": value})
    assert [p.split(":")[0] for p in exc.value.problems] == ["REPORTGEN_INLINE_ARTIFACT_MAX_BYTES"]
