"""Sending exported series to a PACS or any DICOM node (C-STORE, pynetdicom).

Network trouble (node down, association rejected or aborted, connection lost)
is retried with a pause; what was already stored is not sent again.  A node
that answers a C-STORE with a failure status is not retried: that is a
definite no, reported with the file and the status.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.misc import is_dicom
from pynetdicom import AE

from mixfuse_med.atomic import finished_files
from mixfuse_med.errors import ExportError, InputError

_WARNING_STATUSES = {0x0001, 0xB000, 0xB006, 0xB007}


@dataclass
class SendReport:
    """What was stored: SOP Instance UIDs, warnings from the node, associations used."""

    stored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    attempts: int = 0


def dicom_files(files_or_folder: str | Path | Iterable[str | Path]) -> list[Path]:
    """DICOM files to send: a folder is searched recursively (non-DICOM files and partial outputs skipped)."""
    if isinstance(files_or_folder, (str, Path)):
        root = Path(files_or_folder)
        if root.is_dir():
            found = [p for p in sorted(finished_files(root)) if is_dicom(p)]
            if not found:
                raise InputError(root, "no DICOM files to send in this folder")
            return found
        files_or_folder = [root]
    files = [Path(f) for f in files_or_folder]
    for path in files:
        if not path.is_file():
            raise InputError(path, "file to send does not exist")
        if not is_dicom(path):
            raise InputError(path, "not a DICOM file (no DICM preamble)")
    if not files:
        raise InputError(None, "no DICOM files to send")
    return files


class _LogCapture(logging.Handler):
    """pynetdicom logs why an association failed (e.g. "Called AE title not recognised")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _captured_pynetdicom_errors() -> Iterator[_LogCapture]:
    logger = logging.getLogger("pynetdicom")
    handler = _LogCapture()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def send_to_pacs(files_or_folder, host: str, port: int, called_ae: str, calling_ae: str = "MIXFUSE", *,
                 retries: int = 3, retry_delay: float = 2.0, timeout: float = 30.0) -> SendReport:
    """C-STORE every DICOM file to ``called_ae`` at ``host:port``; raise ExportError if any is not stored."""
    files = dicom_files(files_or_folder)
    headers = {path: pydicom.dcmread(path, stop_before_pixels=True) for path in files}
    contexts = sorted({(str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID)) for h in headers.values()})
    if len(contexts) > 128:
        raise InputError(None, f"{len(contexts)} SOP class/syntax pairs: too many for one association")
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    node = f"{called_ae}@{host}:{port}"
    report, pending, problem = SendReport(), list(files), ""
    while pending and report.attempts <= retries:
        if report.attempts:
            time.sleep(retry_delay)
        report.attempts += 1
        with _captured_pynetdicom_errors() as log:
            assoc = ae.associate(host, int(port), ae_title=called_ae)
            if not assoc.is_established:
                problem = _why_not_established(assoc, log.messages)
                continue
            try:
                pending, problem = _store(assoc, pending, headers, report, node)
            finally:
                if assoc.is_established:
                    assoc.release()
    if pending:
        raise ExportError(f"{node}: {len(pending)} of {len(files)} file(s) not stored after "
                          f"{report.attempts} attempt(s): {problem} (calling AE {calling_ae!r})")
    return report


def _why_not_established(assoc, messages: list[str]) -> str:
    """Unreachable, rejected (with the node's reason) or aborted, from pynetdicom's state and log."""
    tcp = [m for m in messages if m.startswith("TCP Initialisation Error")]
    if tcp:
        return f"no DICOM node answered ({tcp[-1].split(':', 1)[1].strip()})"
    if assoc.is_rejected:
        details = "; ".join(m for m in messages if m.startswith(("Reason", "Result")))
        return "the node rejected the association" + (f" [{details}]" if details else "")
    if assoc.is_aborted:
        return "the node aborted the association"
    return "no answer to the association request (timed out)"


def _store(assoc, pending: list[Path], headers: dict, report: SendReport,
           node: str) -> tuple[list[Path], str]:
    """Send pending files on one association; return those still to send and why."""
    for index, path in enumerate(pending):
        try:
            status = assoc.send_c_store(pydicom.dcmread(path))
        except ValueError as error:  # the node accepted none of our contexts for this SOP class
            raise ExportError(f"{node}: does not accept {path} (SOP class {headers[path].SOPClassUID}): "
                              f"{error}") from error
        if "Status" not in status:  # no answer: connection lost, try again on a new association
            return pending[index:], "the connection was lost during C-STORE"
        code = int(status.Status)
        if code == 0x0000 or code in _WARNING_STATUSES:
            report.stored.append(str(headers[path].SOPInstanceUID))
            if code:
                report.warnings.append(f"{path}: C-STORE warning status 0x{code:04X}")
            continue
        raise ExportError(f"{node}: refused to store {path} (C-STORE status 0x{code:04X}, "
                          f"SOP class {headers[path].SOPClassUID})")
    return [], ""
