"""How nbdkit is asked to read a source in place: the password through a file (never on the command
line), the system trust store plus the source's CAs in one bundle, or no verification when asked."""

from __future__ import annotations

from pathlib import Path

from importer.ranged import RangedAccess, nbdkit_argv


def test_credentials_go_through_a_file_and_headers_are_passed(tmp_path: Path) -> None:
    access = RangedAccess("https://h/disk.vmdk", 100, (("X-Token", "t1"),), "user", "s3cret")
    argv = nbdkit_argv(access, tmp_path / "s", tmp_path / "p", tmp_path)
    assert "url=https://h/disk.vmdk" in argv and "header=X-Token: t1" in argv and "user=user" in argv
    assert not any("s3cret" in arg for arg in argv)
    password = next(arg for arg in argv if arg.startswith("password=+"))
    secret = Path(password.removeprefix("password=+"))
    assert secret.read_text() == "s3cret" and secret.stat().st_mode & 0o077 == 0
    assert "--readonly" in argv and "--exit-with-parent" in argv


def test_trust_is_the_system_store_plus_the_sources_cas(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nOURS\n-----END CERTIFICATE-----\n")
    argv = nbdkit_argv(RangedAccess("https://h/d", 1, ca_files=(ca,)), tmp_path / "s", tmp_path / "p", tmp_path)
    bundle = Path(next(arg for arg in argv if arg.startswith("cainfo=")).removeprefix("cainfo="))
    text = bundle.read_text()
    assert "OURS" in text and text.count("BEGIN CERTIFICATE") > 1  # the system store came along
    insecure = nbdkit_argv(RangedAccess("https://h/d", 1, insecure=True), tmp_path / "s", tmp_path / "p", tmp_path)
    assert "sslverify=false" in insecure and not any(a.startswith("cainfo=") for a in insecure)
