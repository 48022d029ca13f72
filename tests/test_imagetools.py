"""`python -m registry_ha.imagetools oci-layout DIR`: the image the README's quick start pushes."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT, require_binary


def imagetools(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry_ha.imagetools", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})


def test_oci_layout_writes_an_image_skopeo_reads(tmp_path):
    proc = imagetools("oci-layout", "demo-image", "--tag", "v2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "oci:demo-image:v2\n"
    inspected = subprocess.run([require_binary("skopeo"), "inspect", "oci:demo-image:v2"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    assert len(json.loads(inspected.stdout)["Layers"]) == 3
    assert imagetools("oci-layout", "demo-image", cwd=tmp_path).stdout == "oci:demo-image:v1\n"  # a second tag
    tags = [m["annotations"]["org.opencontainers.image.ref.name"]
            for m in json.loads((tmp_path / "demo-image" / "index.json").read_text())["manifests"]]
    assert tags == ["v2", "v1"]


def test_oci_layout_usage_and_write_errors(tmp_path):
    bad_tag = imagetools("oci-layout", "x", "--tag", "no spaces", cwd=tmp_path)
    assert bad_tag.returncode == 2 and "--tag: a tag of letters" in bad_tag.stderr
    (tmp_path / "file").write_text("")
    unwritable = imagetools("oci-layout", "file/layout", cwd=tmp_path)
    assert unwritable.returncode == 1 and unwritable.stderr.startswith("error: cannot write file/layout:")
    assert "Traceback" not in bad_tag.stderr + unwritable.stderr
