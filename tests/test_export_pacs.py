"""C-STORE to a real Orthanc started on loopback ports; its REST API shows what arrived."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from export_fixtures import STUDY, make_study

from mixfuse_med.atomic import temporary_name
from mixfuse_med.errors import ExportError, InputError
from mixfuse_med.export import export_study, send_to_pacs

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
AET = "MIXTEST"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """An Orthanc with its own storage, a checked called AE title, no plugins, loopback only."""
    if not Path(ORTHANC).exists():  # fail, not skip: CI must really test against a PACS
        pytest.fail("Orthanc not found: install the Debian package 'orthanc'")
    tmp = tmp_path_factory.mktemp("orthanc")
    dicom_port, http_port = _free_port(), _free_port()
    config = {
        "Name": "mixfuse-test", "StorageDirectory": str(tmp / "db"), "IndexDirectory": str(tmp / "db"),
        "Plugins": [], "HttpServerEnabled": True, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "OrthancExplorerEnabled": False, "WebDavEnabled": False,
        "DicomServerEnabled": True, "DicomAet": AET, "DicomPort": dicom_port, "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True, "ConcurrentJobs": 1, "HttpThreadsCount": 4,
    }
    (tmp / "orthanc.json").write_text(json.dumps(config))
    log = open(tmp / "orthanc.log", "w")
    process = subprocess.Popen([ORTHANC, str(tmp / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"Orthanc exited: {(tmp / 'orthanc.log').read_text()[-2000:]}")
            try:
                _get(base + "/system")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Orthanc did not answer within 60 s")
                time.sleep(0.2)
        yield {"port": dicom_port, "http": base}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_exported_series_arrive_in_orthanc(orthanc, tmp_path):
    study = make_study(tmp_path, source="dicom")
    out = tmp_path / "out"
    paths = export_study(study, out)
    # a leftover partial series must not be sent
    planted = temporary_name(out / "dicom" / "half_written")
    planted.mkdir()
    shutil.copy(next(paths["fused_rgb_dicom"].glob("*.dcm")), planted / "0001.dcm")

    report = send_to_pacs(out, "127.0.0.1", orthanc["port"], AET, retries=1, retry_delay=0.2)
    assert len(report.stored) == 10 and report.attempts == 1

    series = {s["MainDicomTags"]["SeriesInstanceUID"]: s for s in _get(orthanc["http"] + "/series?expand")}
    for key in ("fused_rgb_dicom", "functional_dicom"):
        uid = pydicom.dcmread(next(paths[key].glob("*.dcm"))).SeriesInstanceUID
        assert uid in series, f"{key} not in Orthanc"
        assert len(series[uid]["Instances"]) == study.mri.shape[3]
        parent = _get(orthanc["http"] + f"/studies/{series[uid]['ParentStudy']}")
        assert parent["MainDicomTags"]["StudyInstanceUID"] == STUDY["StudyInstanceUID"]
    assert _get(orthanc["http"] + "/statistics")["CountInstances"] == 10


def test_wrong_called_ae_title_is_a_clear_error(orthanc, tmp_path):
    study = make_study(tmp_path, source="nifti")
    paths = export_study(study, tmp_path / "out", formats=("dicom",))
    with pytest.raises(ExportError, match=r"rejected the association.*Called AE title not recognised"):
        send_to_pacs(paths["fused_rgb_dicom"], "127.0.0.1", orthanc["port"], "NOT-THERE", retries=0)


def test_unreachable_node_is_retried_then_reported(tmp_path):
    study = make_study(tmp_path, source="nifti")
    paths = export_study(study, tmp_path / "out", formats=("dicom",))
    with pytest.raises(ExportError, match=r"not stored after 3 attempt\(s\): no DICOM node answered"):
        send_to_pacs(paths["functional_dicom"], "127.0.0.1", _free_port(), AET, retries=2, retry_delay=0.05,
                     timeout=5)


def test_nothing_to_send_is_an_input_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no DICOM here")
    with pytest.raises(InputError, match="no DICOM files"):
        send_to_pacs(tmp_path, "127.0.0.1", 104, AET)
    with pytest.raises(InputError, match="not a DICOM file"):
        send_to_pacs([tmp_path / "notes.txt"], "127.0.0.1", 104, AET)
