# ---
# name: flush-dns
# description: Clear the Windows DNS client cache and show how many entries it held.
# shells: [powershell]
# timeout: 1m
# min_role: tier1
# ---
# Exit codes: 0 cache cleared, 1 clearing failed.
$ErrorActionPreference = 'Stop'

if (Get-Command -Name Clear-DnsClientCache -ErrorAction SilentlyContinue) {
    try {
        $before = @(Get-DnsClientCache).Count
        Clear-DnsClientCache
        $after = @(Get-DnsClientCache).Count
    } catch {
        [Console]::Error.WriteLine("flush-dns: $($_.Exception.Message)")
        exit 1
    }
    # Entries after the flush are lookups made since, or the hosts file's, which always stay.
    Write-Output "DNS client cache cleared: $before entries before, $after now"
} else {
    # No DnsClient module (old or minimal Windows): ipconfig does the same.
    & ipconfig.exe /flushdns
    if ($LASTEXITCODE -ne 0) {
        [Console]::Error.WriteLine("flush-dns: ipconfig /flushdns failed (exit code $LASTEXITCODE)")
        exit 1
    }
}
exit 0
