# ---
# name: clear-temp
# description: Delete files not written for DAYS days (default 7) from the Windows and every user's temp folder; prints the space freed.
# shells: [powershell]
# timeout: 30m
# min_role: tier2
# params:
#   - name: days
#     type: int
#     min: 1
#     max: 3650
#     default: 7
#     description: delete files not written for this many days
# ---
# Files in use are skipped, links (junctions, symbolic links) are never followed, and only files
# older than DAYS go, so running programs keep their fresh temp files.
# Exit codes: 0 done (some files may have been skipped), 2 bad argument.
# The server passes the checked parameter as RMM_PARAM_DAYS; -Days when run by hand.
param([string]$Days = $(if ($env:RMM_PARAM_DAYS) { $env:RMM_PARAM_DAYS } else { '7' }))

$ErrorActionPreference = 'Stop'
$parsed = 0
if (-not [int]::TryParse($Days, [ref]$parsed) -or $parsed -lt 1 -or $args.Count -gt 0) {
    [Console]::Error.WriteLine("clear-temp: DAYS must be one whole number of days, 1 or more (got '$Days $args')")
    exit 2
}
$cutoff = (Get-Date).AddDays(-$parsed)
$script:skipped = 0

function Format-Size([long]$Bytes) {
    if ($Bytes -ge 1GB) { return '{0:N1} GB' -f ($Bytes / 1GB) }
    if ($Bytes -ge 1MB) { return '{0:N1} MB' -f ($Bytes / 1MB) }
    if ($Bytes -ge 1KB) { return '{0:N1} KB' -f ($Bytes / 1KB) }
    return "$Bytes B"
}

function Get-TempFolders {
    $candidates = [System.Collections.Generic.List[string]]::new()
    $candidates.Add((Join-Path $env:SystemRoot 'Temp'))
    $candidates.Add([System.IO.Path]::GetTempPath())
    try {
        foreach ($userProfile in Get-CimInstance -ClassName Win32_UserProfile) {
            if ($userProfile.LocalPath) {
                $candidates.Add((Join-Path $userProfile.LocalPath 'AppData\Local\Temp'))
            }
        }
    } catch {
        # No CIM (stripped-down Windows): the usual profile folder instead.
        $users = Join-Path $env:SystemDrive 'Users'
        foreach ($folder in Get-ChildItem -LiteralPath $users -Directory -Force -ErrorAction SilentlyContinue) {
            $candidates.Add((Join-Path $folder.FullName 'AppData\Local\Temp'))
        }
    }
    $seen = @{}
    foreach ($candidate in $candidates) {
        $full = [System.IO.Path]::GetFullPath($candidate).TrimEnd('\')
        $key = $full.ToLowerInvariant()
        # Only folders called Temp: a TEMP variable pointing at C:\ must not empty C:\.
        if ((Split-Path -Leaf $full) -ne 'Temp') { continue }
        if (-not $seen.ContainsKey($key) -and (Test-Path -LiteralPath $full -PathType Container)) {
            $seen[$key] = $true
            $full
        }
    }
}

function Clear-Folder([string]$Root) {
    $freed = [long]0
    $files = 0
    $visited = [System.Collections.Generic.List[object]]::new()
    $pending = [System.Collections.Generic.Stack[string]]::new()
    $pending.Push($Root)
    while ($pending.Count -gt 0) {
        $dir = $pending.Pop()
        try {
            $items = @(Get-ChildItem -LiteralPath $dir -Force -ErrorAction Stop)
        } catch {
            $script:skipped++
            continue
        }
        foreach ($item in $items) {
            if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) { continue }
            if ($item.PSIsContainer) {
                # Deleting files touches a folder's time, so judge its age now.
                $visited.Add([pscustomobject]@{ Path = $item.FullName; Old = $item.LastWriteTime -lt $cutoff })
                $pending.Push($item.FullName)
                continue
            }
            if ($item.LastWriteTime -ge $cutoff) { continue }
            $size = $item.Length
            try {
                Remove-Item -LiteralPath $item.FullName -Force -ErrorAction Stop
                $freed += $size
                $files++
            } catch {
                $script:skipped++
            }
        }
    }
    # Sub-folders were visited after their parents: in reverse, children go first.
    for ($index = $visited.Count - 1; $index -ge 0; $index--) {
        $folder = $visited[$index]
        if ($folder.Old) {
            # Fails, harmlessly, unless the folder is empty.
            try { [System.IO.Directory]::Delete($folder.Path, $false) } catch { }
        }
    }
    [pscustomobject]@{ Freed = $freed; Files = $files }
}

$total = [long]0
foreach ($folder in Get-TempFolders) {
    $result = Clear-Folder $folder
    $total += $result.Freed
    Write-Output ("{0}: {1} files, {2} freed" -f $folder, $result.Files, (Format-Size $result.Freed))
}
Write-Output ("freed {0} in total (files older than {1} days)" -f (Format-Size $total), $parsed)
if ($script:skipped -gt 0) {
    Write-Output "$($script:skipped) files or folders were in use or unreadable and were left"
}
exit 0
