"""Windows updates and drivers through the Windows Update Agent API, driven by PowerShell.

The WUA COM API (Microsoft.Update.Session) is reached from powershell.exe, which every
supported Windows has: no pywin32 in the agent, and a hung COM call dies with its process.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from rmm_agent.patching.base import (
    BUGFIX,
    CRITICAL,
    DRIVER,
    FAILED,
    FEATURE,
    INSTALLED,
    LOCKED,
    SECURITY,
    Clock,
    CommandBackend,
    InstallOutcome,
    InstallStep,
    PatchError,
    PendingUpdate,
    ProcessRunner,
    Which,
    run_process,
    sort_updates,
    update_id,
)

NAME = SOURCE = "windows-update"
SEARCH_CRITERIA = "IsInstalled=0 and IsHidden=0"
POWERSHELL = (
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-Command",
)

# Update classifications by their CategoryID, which unlike the Name is not translated.
CLASSIFICATION_IDS = {
    "e6cf1350-c01b-414d-a61f-263d14d133b4": CRITICAL,  # Critical Updates
    "0fa1201d-4330-4fa8-8ae9-b877473b6441": SECURITY,  # Security Updates
    # Defender's definitions are protection updates: approved with security, not features.
    "e0789628-ce08-4437-be74-2495b842f43b": SECURITY,  # Definition Updates
    "28bc880e-0592-4cbf-8f95-c79b17911d5f": BUGFIX,  # Update Rollups
    "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83": BUGFIX,  # Updates
    "68c5b0a3-d1a6-4553-ae49-01d3a7827828": BUGFIX,  # Service Packs
    "b54e7d24-7add-428f-8b75-90a396fa584f": FEATURE,  # Feature Packs
    "3689bdc8-b205-4af4-8d4a-a63924c5e9d5": FEATURE,  # Upgrades
    "b4832bd8-e735-4761-8daf-37f882276dab": FEATURE,  # Tools
    "ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0": DRIVER,  # Drivers
}
# English names, for a category whose ID is missing (WSUS-approved third-party catalogs).
CLASSIFICATION_NAMES = {
    "Critical Updates": CRITICAL,
    "Security Updates": SECURITY,
    "Definition Updates": SECURITY,
    "Update Rollups": BUGFIX,
    "Updates": BUGFIX,
    "Service Packs": BUGFIX,
    "Feature Packs": FEATURE,
    "Upgrades": FEATURE,
    "Tools": FEATURE,
    "Drivers": DRIVER,
}
# An update in several classifications is counted once, under the most urgent.
WINDOWS_CLASSIFICATIONS = (SECURITY, CRITICAL, BUGFIX, FEATURE, DRIVER)
# IUpdate.Type: 1 software, 2 driver.
UPDATE_TYPE_DRIVER = 2
# IInstallationResult.ResultCode (OperationResultCode).
RESULT_CODES = {
    0: "not started",
    1: "in progress",
    2: "succeeded",
    3: "succeeded with errors",
    4: "failed",
    5: "aborted",
}
SUCCEEDED_CODES = (2, 3)
# WU_E_INSTALL_NOT_ALLOWED (another installation is running or a reboot is pending),
# WU_E_SERVICE_STOP (the service is shutting down), WU_E_AU_NOSERVICE (Automatic Updates
# cannot serve requests now): each clears by itself, so the install is retried later.
BUSY_HRESULTS = frozenset({0x80240016, 0x8024001E, 0x8024A000})
UPDATE_ID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

# Search offline, against what the last scheduled scan downloaded: no round trip to Microsoft
# or WSUS on every host at once. Prints a JSON array, one object per update.
SEARCH_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
$session = New-Object -ComObject Microsoft.Update.Session
$searcher = $session.CreateUpdateSearcher()
$searcher.Online = $false
$found = $searcher.Search('%(criteria)s')
$list = @(foreach ($u in $found.Updates) {
  $o = [ordered]@{
    Title = $u.Title
    Type = [int]$u.Type
    MsrcSeverity = [string]$u.MsrcSeverity
    KBArticleIDs = @($u.KBArticleIDs | ForEach-Object { [string]$_ })
    LastDeploymentChangeTime = $u.LastDeploymentChangeTime.ToString('o')
    MaxDownloadSize = [int64]$u.MaxDownloadSize
    RebootBehavior = [int]$u.InstallationBehavior.RebootBehavior
    IsDownloaded = [bool]$u.IsDownloaded
    Identity = [ordered]@{
      UpdateID = $u.Identity.UpdateID; RevisionNumber = [int]$u.Identity.RevisionNumber }
    Categories = @($u.Categories | ForEach-Object {
      [ordered]@{ Name = $_.Name; CategoryID = $_.CategoryID; Type = $_.Type } })
  }
  if ($u.Type -eq 2) {
    $o.DriverClass = $u.DriverClass
    $o.DriverHardwareID = $u.DriverHardwareID
    $o.DriverManufacturer = $u.DriverManufacturer
    $o.DriverModel = $u.DriverModel
    $o.DriverVerDate = $u.DriverVerDate.ToString('o')
  }
  $o
})
ConvertTo-Json -InputObject $list -Depth 5 -Compress
"""

# Download and install the updates whose UpdateID is listed, then print one JSON object:
# {"Busy": bool, "RebootRequired": bool, "Results": [{UpdateID, ResultCode, HResult,
# RebootRequired}]} (HResult as an unsigned number). An exception prints {"Error", "HResult"}.
INSTALL_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
$ids = @(%(ids)s)
try {
  $session = New-Object -ComObject Microsoft.Update.Session
  $session.ClientApplicationID = 'rmm-agent'
  $installer = $session.CreateUpdateInstaller()
  if ($installer.IsBusy) { ConvertTo-Json -Compress @{ Busy = $true }; exit 0 }
  $found = $session.CreateUpdateSearcher().Search('%(criteria)s')
  $todo = New-Object -ComObject Microsoft.Update.UpdateColl
  foreach ($u in $found.Updates) {
    if ($ids -contains $u.Identity.UpdateID) {
      if (-not $u.EulaAccepted) { $u.AcceptEula() }
      [void]$todo.Add($u)
    }
  }
  $results = @()
  if ($todo.Count -gt 0) {
    $downloader = $session.CreateUpdateDownloader()
    $downloader.Updates = $todo
    [void]$downloader.Download()
    $installer.Updates = $todo
    $installer.ForceQuiet = $true
    $done = $installer.Install()
    for ($i = 0; $i -lt $todo.Count; $i++) {
      $r = $done.GetUpdateResult($i)
      $results += [ordered]@{
        UpdateID = $todo.Item($i).Identity.UpdateID
        ResultCode = [int]$r.ResultCode
        HResult = [uint32]('0x{0:X8}' -f $r.HResult)
        RebootRequired = [bool]$r.RebootRequired
      }
    }
    $reboot = [bool]$done.RebootRequired
  } else { $reboot = $false }
  ConvertTo-Json -Compress -Depth 4 @{ Busy = $false; RebootRequired = $reboot; Results = $results }
} catch {
  $code = [uint32]('0x{0:X8}' -f $_.Exception.HResult)
  ConvertTo-Json -Compress @{ Error = $_.Exception.Message; HResult = $code }
}
"""


def classify(update: Mapping[str, Any]) -> str:
    """Return an update's classification from its categories, the most urgent first."""
    found = set()
    for category in update.get("Categories") or []:
        if category.get("Type") not in (None, "UpdateClassification"):
            continue  # a product category ("Windows 11"), not a classification
        cid = str(category.get("CategoryID") or "").lower()
        found.add(CLASSIFICATION_IDS.get(cid) or CLASSIFICATION_NAMES.get(category.get("Name")))
    if update.get("Type") == UPDATE_TYPE_DRIVER:
        found.add(DRIVER)
    return next((c for c in WINDOWS_CLASSIFICATIONS if c in found), BUGFIX)


def category_name(update: Mapping[str, Any]) -> str:
    """Return the update's classification as Windows Update names it, for the source."""
    for category in update.get("Categories") or []:
        if category.get("Type") in (None, "UpdateClassification"):
            return str(category.get("Name") or "")
    return "Drivers" if update.get("Type") == UPDATE_TYPE_DRIVER else ""


def parse_timestamp(text: str | None) -> float | None:
    """Return an ISO 8601 time as epoch seconds, or None."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.year < 1971:
        return None  # DateTime.MinValue: the update carries no date
    # COM hands PowerShell its dates without a zone; Windows Update's are UTC.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def available_version(update: Mapping[str, Any]) -> str:
    """Return what identifies the update's version: its KBs, a driver's date, or the revision."""
    kbs = [f"KB{kb}" for kb in update.get("KBArticleIDs") or []]
    if kbs:
        return ", ".join(kbs)
    if update.get("DriverVerDate"):
        return str(update["DriverVerDate"])[:10]
    return f"rev {(update.get('Identity') or {}).get('RevisionNumber', 0)}"


def parse_windows_updates(updates: Sequence[Mapping[str, Any]]) -> list[PendingUpdate]:
    """Turn the search script's objects into pending updates."""
    pending = []
    for update in updates:
        identity = update.get("Identity") or {}
        uid = str(identity.get("UpdateID") or "")
        size = update.get("MaxDownloadSize")
        pending.append(
            PendingUpdate(
                id=update_id(NAME, uid),
                name=str(update.get("Title") or uid or "?"),
                current=None,
                available=available_version(update),
                classification=classify(update),
                backend=NAME,
                source=category_name(update),
                severity=str(update.get("MsrcSeverity") or ""),
                published=parse_timestamp(update.get("LastDeploymentChangeTime")),
                size_bytes=int(size) if size else None,
                # InstallationBehavior.RebootBehavior: 0 never, 1 always, 2 can request.
                reboot_required=int(update.get("RebootBehavior") or 0) != 0,
                hardware_ids=(str(update["DriverHardwareID"]),)
                if update.get("DriverHardwareID")
                else (),
            )
        )
    return sort_updates(pending)


def parse_search_output(text: str) -> list[PendingUpdate]:
    """Parse the search script's JSON array."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise PatchError(f"Windows Update search printed no JSON ({exc}): {text[:200]!r}") from exc
    if isinstance(data, dict):  # PowerShell 5.1 unwraps a one-element array
        data = [data]
    return parse_windows_updates([u for u in data if isinstance(u, dict)])


def hresult_text(hresult: int) -> str:
    """Return an HRESULT as Windows shows it (0x80240016)."""
    return f"0x{hresult & 0xFFFFFFFF:08X}"


def parse_install_output(text: str, ids: Sequence[str]) -> dict[str, InstallOutcome]:
    """Parse the install script's JSON into outcomes, keyed by update id."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        message = f"Windows Update install printed no JSON: {text.strip()[:300]!r}"
        return {uid: InstallOutcome(uid, FAILED, message) for uid in ids}
    hresult = int(data.get("HResult") or 0)
    if data.get("Busy") or hresult in BUSY_HRESULTS:
        message = "Windows Update is busy with another installation or a pending reboot"
        return {uid: InstallOutcome(uid, LOCKED, message) for uid in ids}
    if data.get("Error"):
        message = f"Windows Update: {data['Error']} ({hresult_text(hresult)})"
        return {uid: InstallOutcome(uid, FAILED, message) for uid in ids}
    outcomes = {}
    for result in data.get("Results") or []:
        uid = update_id(NAME, str(result.get("UpdateID")))
        code, hresult = int(result.get("ResultCode", 0)), int(result.get("HResult") or 0)
        reboot = bool(result.get("RebootRequired"))
        if code in SUCCEEDED_CODES:
            outcomes[uid] = InstallOutcome(uid, INSTALLED, "", None, reboot)
        elif hresult in BUSY_HRESULTS:
            outcomes[uid] = InstallOutcome(
                uid, LOCKED, f"Windows Update is busy ({hresult_text(hresult)})"
            )
        else:
            said = RESULT_CODES.get(code, f"result code {code}")
            outcomes[uid] = InstallOutcome(
                uid, FAILED, f"Windows Update: install {said} ({hresult_text(hresult)})"
            )
    return outcomes


def install_script(update_ids: Sequence[str]) -> str:
    """Return the install script for these UpdateIDs (GUIDs only: nothing else is quoted in)."""
    bad = [u for u in update_ids if not UPDATE_ID_RE.match(u)]
    if bad:
        raise ValueError(f"not Windows Update UpdateIDs (GUIDs): {', '.join(map(repr, bad))}")
    quoted = ", ".join(f"'{u}'" for u in update_ids)
    return INSTALL_SCRIPT % {"ids": quoted, "criteria": SEARCH_CRITERIA}


class WindowsUpdateBackend(CommandBackend):
    """Search the Windows Update Agent for software and driver updates, and install them."""

    name: str = NAME
    classifications: tuple[str, ...] = WINDOWS_CLASSIFICATIONS
    program: ClassVar[str] = "powershell.exe"
    platforms: ClassVar[tuple[str, ...]] = ("win",)
    # Windows Update's rescan is its own offline search: seconds, not minutes.
    rescan_reserve_seconds: ClassVar[float] = 120.0

    def __init__(
        self,
        *,
        runner: ProcessRunner = run_process,
        which: Which | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(runner=runner, which=which, clock=clock)

    def search_argv(self) -> list[str]:
        """Return the command line of the offline search."""
        return [*POWERSHELL, SEARCH_SCRIPT % {"criteria": SEARCH_CRITERIA}]

    def read_updates(self) -> list[PendingUpdate]:
        """Search offline for updates not installed and not hidden."""
        return parse_search_output(self.query(self.search_argv()))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one PowerShell run downloading and installing every update."""
        guids = [u.id.split(":", 1)[1] for u in updates]
        return [InstallStep([*POWERSHELL, install_script(guids)], list(updates))]

    def step_outcomes(self, step: InstallStep, stdout: str) -> dict[str, InstallOutcome]:
        """Read each update's result from the install script's JSON."""
        return parse_install_output(stdout, [u.id for u in step.updates])
