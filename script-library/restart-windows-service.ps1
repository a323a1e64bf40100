# ---
# name: restart-windows-service
# description: Restart a Windows service (its running dependents come back too) and show its state; exits non-zero unless it runs afterwards.
# shells: [powershell]
# timeout: 3m
# min_role: tier2
# params:
#   - name: name
#     type: string
#     required: true
#     pattern: "[^*?\\[\\]]+"
#     description: the service name (e.g. Spooler) or its exact display name (e.g. Print Spooler)
# ---
# NAME is the service name (e.g. Spooler) or its exact display name (e.g. "Print Spooler").
# Exit codes: 0 running after the restart, 1 restart failed or not running, 2 bad argument or
# no such service.
# The server passes the checked parameter as RMM_PARAM_NAME; -Name when run by hand.
param([string]$Name = $(if ($env:RMM_PARAM_NAME) { $env:RMM_PARAM_NAME } else { '' }))

$ErrorActionPreference = 'Stop'
# One service, named exactly: a wildcard would make Restart-Service restart every match.
if ($Name -eq '' -or $Name -match '[*?\[\]]' -or $args.Count -gt 0) {
    [Console]::Error.WriteLine("restart-windows-service: give exactly one service name without wildcards, e.g. Spooler")
    exit 2
}
$service = @(Get-Service -Name $Name -ErrorAction SilentlyContinue)
if ($service.Count -eq 0) {
    $service = @(Get-Service -DisplayName $Name -ErrorAction SilentlyContinue)
}
if ($service.Count -ne 1) {
    [Console]::Error.WriteLine("restart-windows-service: no service is named '$Name'; list them with Get-Service")
    exit 2
}
$service = $service[0]
# Restart-Service -Force stops the services that depend on this one but starts only this one.
$dependents = @($service.DependentServices | Where-Object { $_.Status -eq 'Running' })

Write-Output "restarting $($service.Name) ($($service.DisplayName)), now $($service.Status)"
$failed = $false
try {
    Restart-Service -InputObject $service -Force -ErrorAction Stop
    $service.WaitForStatus('Running', [TimeSpan]::FromSeconds(60))
    foreach ($dependent in $dependents) {
        $dependent.Refresh()
        if ($dependent.Status -ne 'Running') {
            Write-Output "starting dependent service $($dependent.Name) again"
            Start-Service -InputObject $dependent -ErrorAction Stop
        }
    }
} catch {
    [Console]::Error.WriteLine("restart-windows-service: $($_.Exception.Message)")
    $failed = $true
}
# A service that dies right after starting still shows Running at first: look again shortly.
Start-Sleep -Seconds 3
$service.Refresh()
$service | Format-List Name, DisplayName, Status, StartType | Out-String | Write-Output
if ($service.Status -ne 'Running') {
    [Console]::Error.WriteLine("restart-windows-service: $($service.Name) is $($service.Status) after the restart")
    exit 1
}
if ($failed) {
    [Console]::Error.WriteLine("restart-windows-service: $($service.Name) runs, but the restart reported the error above")
    exit 1
}
Write-Output "$($service.Name) is running"
exit 0
