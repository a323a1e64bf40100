"""The MSP's desk (issue #15, docs/desk.md): clients, sites and contracts as records."""
